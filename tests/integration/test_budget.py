"""Tier 2: max_requests_per_statement (cognito_fdw/budget.py), counted at the proxy: a plan
over the budget sends nothing, a statement that reaches it stops, and no role raises it."""

from __future__ import annotations

import psycopg
import pytest

from ..support.pool import POOL_REGION
from ..support.postgres import create_server

pytestmark = pytest.mark.server

BUDGET = 2


@pytest.fixture(scope="module")
def budgeted(setup, pool, groups_pool_id, proxy):
    """Schema bu: users (150 users: 3 pages) and groups on servers whose statements may send
    BUDGET requests, through the proxy; bu.names holds five usernames.  (That a table may
    only lower the budget and a user mapping may not set it is the guard's: test_guard.py
    tries every limit option and the mapping's attacks.)"""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        create_server(
            conn, "bu_srv", pool.pool_id, proxy.url, region=POOL_REGION,
            max_requests_per_statement=BUDGET,
        )  # fmt: skip
        create_server(conn, "bg_srv", groups_pool_id, proxy.url, max_requests_per_statement=BUDGET)
        conn.execute("CREATE SCHEMA bu")
        conn.execute(
            "CREATE FOREIGN TABLE bu.users (username text, email text) "
            "SERVER bu_srv OPTIONS (object 'users')"
        )
        conn.execute(
            "CREATE FOREIGN TABLE bu.groups (group_name text) SERVER bg_srv "
            "OPTIONS (object 'groups')"
        )
        conn.execute(
            "CREATE FOREIGN TABLE bu.members (group_name text, username text) SERVER bg_srv "
            "OPTIONS (object 'group_members')"
        )
        conn.execute("CREATE TABLE bu.names (username text)")
        conn.cursor().executemany(
            "INSERT INTO bu.names VALUES (%s)", [(u["Username"],) for u in pool.users[:5]]
        )
        conn.execute("ANALYZE bu.names")
    return pool


def test_a_scan_whose_plan_exceeds_the_budget_sends_nothing(db, budgeted, proxy):
    proxy.clear()
    with pytest.raises(psycopg.Error) as failed:
        db.execute("SELECT count(*) FROM bu.users")
    message = failed.value.diag.message_primary
    assert "max_requests_per_statement (2)" in message
    assert "a scan of the whole user pool (about 150 users) would send about" in message
    assert "nothing was sent" in message
    assert "raise max_requests_per_statement" in failed.value.diag.message_hint
    assert proxy.requests("ListUsers") == []


def test_a_join_that_reaches_the_budget_stops(db, budgeted, proxy):
    proxy.clear()
    db.execute("SET enable_hashjoin = off")
    db.execute("SET enable_mergejoin = off")
    try:
        plan = "\n".join(
            r[0]
            for r in db.execute(
                "EXPLAIN SELECT u.email FROM bu.names n JOIN bu.users u USING (username)"
            )
        )
        assert "Nested Loop" in plan
        with pytest.raises(psycopg.Error) as failed:
            db.execute("SELECT u.email FROM bu.names n JOIN bu.users u USING (username)")
    finally:
        db.execute("RESET enable_hashjoin")
        db.execute("RESET enable_mergejoin")
    assert "reached max_requests_per_statement (2 Cognito requests)" in (
        failed.value.diag.message_primary
    )
    assert len(proxy.requests("ListUsers")) == BUDGET  # five outer rows, two lookups


def test_an_in_list_of_groups_over_the_budget_sends_nothing(db, budgeted, proxy):
    proxy.clear()
    with pytest.raises(psycopg.Error) as failed:
        db.execute(
            "SELECT * FROM bu.groups WHERE group_name IN ('admins', 'staff', 'empty', 'big')"
        )
    assert "GetGroup for 4 groups would send about 4" in failed.value.diag.message_primary
    assert proxy.requests("GetGroup") == []
    # Within the budget it runs; a new statement starts from nothing.
    for names in ("'admins', 'staff'", "'admins', 'big'"):
        found = db.execute(f"SELECT * FROM bu.groups WHERE group_name IN ({names})").fetchall()
        assert len(found) == 2


def test_a_correlated_sub_select_stops_at_the_budget(db, budgeted, proxy):
    proxy.clear()
    with pytest.raises(psycopg.Error) as failed:
        db.execute(
            "SELECT n.username, (SELECT u.email FROM bu.users u WHERE u.username = n.username) "
            "FROM bu.names n"
        )
    assert "reached max_requests_per_statement (2 Cognito requests)" in (
        failed.value.diag.message_primary
    )
    assert len(proxy.requests("ListUsers")) == BUDGET


def test_a_members_in_list_over_the_budget_sends_nothing(db, budgeted, proxy):
    proxy.clear()
    with pytest.raises(psycopg.Error) as failed:
        db.execute("SELECT * FROM bu.members WHERE username IN ('alice', 'bob', 'carol')")
    assert "AdminListGroupsForUser for 3 users would send about 3" in (
        failed.value.diag.message_primary
    )
    assert proxy.requests() == []


def test_each_transaction_of_a_procedure_has_a_budget_of_its_own(db, budgeted, proxy):
    """As sql/sync.sql's parts do: two lookups, COMMIT, two more, within a budget of two."""
    names = [u["Username"] for u in budgeted.users[10:14]]
    lookups = [f"PERFORM * FROM bu.users WHERE username = '{name}';" for name in names]
    proxy.clear()
    db.execute(f"DO $$ BEGIN {' '.join(lookups[:2])} COMMIT; {' '.join(lookups[2:])} END $$")
    assert len(proxy.requests("ListUsers")) == 4
    with pytest.raises(psycopg.Error, match="reached max_requests_per_statement"):
        db.execute(f"DO $$ BEGIN {' '.join(lookups[:3])} END $$")
