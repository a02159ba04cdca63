"""Tier 2: NULLs and empty lists answer as PostgreSQL does and cost what they must.

Each query runs on the foreign table and on a local copy of it (``CREATE TABLE ... AS``); the
answers must be equal.  A condition no row can satisfy costs zero requests.  Multicorn passes ``col
IS NULL`` exactly as ``col = <NULL parameter>`` (a NULL join key, ``= $1`` executed with NULL) at
execution (docs/multicorn.md M10: IS NULL and a NULL key arrive alike): on a column that is never
NULL (username, sub, status, enabled; a membership's group and user) both match nothing and cost
nothing; on an attribute a user may lack (email) a NULL key costs nothing too, unless the session
has planned ``IS NULL`` on that column: then the pool is read, or ``email IS NULL``'s rows could be
lost.  Each test runs in a new session (``db``).
"""

from __future__ import annotations

import math

import psycopg
import pytest

from cognito_fdw.tools.seed import create_users

from ..support.accounting import counting, requests_of
from ..support.pool import new_user
from ..support.postgres import create_server, explain_text

pytestmark = pytest.mark.server

COLUMNS = "username text, sub text, email varchar(200), given_name text, enabled boolean"
GROUPS = {"g1": ["ann", "bea"], "g2": ["cid"], "g3": []}
NO_REQUEST = "Cognito: no request: the condition cannot be true"


@pytest.fixture(scope="module")
def nl(setup, cognito):
    """Schema nl: users on the shared pool, members and groups on a small pool of its own,
    a local copy of each, and keys(username, email) holding NULLs for joins."""
    pool_id = cognito.create_user_pool(PoolName="cognito-fdw-nulls")["UserPool"]["Id"]
    # 60 users outside every group make a full read of the members cost more than lookups.
    names = ["ann", "bea", "cid", "dan"] + [f"x{i:02d}" for i in range(60)]
    create_users(cognito, pool_id, (new_user(name) for name in names))
    for group, users in GROUPS.items():
        cognito.create_group(UserPoolId=pool_id, GroupName=group)
        for user in users:
            cognito.admin_add_user_to_group(UserPoolId=pool_id, GroupName=group, Username=user)
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        create_server(conn, "nulls_server", pool_id, setup.endpoint)
        conn.execute("CREATE SCHEMA nl")
        conn.execute(
            f"CREATE FOREIGN TABLE nl.users ({COLUMNS}) SERVER cognito_server "
            "OPTIONS (object 'users')"
        )
        conn.execute(
            "CREATE FOREIGN TABLE nl.members (group_name text, username text, membership text, "
            "given_name text) SERVER nulls_server OPTIONS (object 'group_members')"
        )
        conn.execute(
            "CREATE FOREIGN TABLE nl.groups (group_name text, description text) "
            "SERVER nulls_server OPTIONS (object 'groups')"
        )
        for table in ("users", "members", "groups"):
            conn.execute(f"CREATE TABLE nl.local_{table} AS SELECT * FROM nl.{table}")
        conn.execute("CREATE TABLE nl.keys (username text, email text)")
        conn.execute(
            "INSERT INTO nl.keys VALUES ('user001', 'user001@example.com'), "
            "('user002', 'user002@example.com'), ('user001', 'user001@example.com'), "
            "('user007', NULL), (NULL, NULL), (NULL, NULL), (NULL, 'user003@example.com')"
        )
        conn.execute("ANALYZE nl.keys")
    return setup


@pytest.fixture
def same(db, nl):
    """Run ``sql`` (``{t}`` is the table) on the foreign table and on its local copy;
    assert equal answers; return the foreign answer and its requests per scan."""

    def run(sql, table="users", params=None):
        local = db.execute(sql.replace("{t}", f"nl.local_{table}"), params).fetchall()
        with counting(db):
            rows = db.execute(sql.replace("{t}", f"nl.{table}"), params).fetchall()
            requests = requests_of(db)
        assert sorted(rows, key=repr) == sorted(local, key=repr)
        return rows, requests

    return run


def pages(pool) -> int:
    return math.ceil(len(pool.users) / 60)


IMPOSSIBLE = [
    "username = ANY(NULL::text[])",
    "email = ANY(NULL::text[])",
    "username = ANY('{}'::text[])",
    "email = ANY('{NULL,NULL}'::text[])",
    "email IN (NULL, NULL)",
    "given_name IN (NULL, NULL)",
    "username NOT IN ('user001', NULL)",
    "email <> ALL(NULL::text[])",
    "username IN ('a b', NULL, '')",
    "username IS NULL",
    "sub IS NULL",
    "enabled IS UNKNOWN",
]


@pytest.mark.parametrize("condition", IMPOSSIBLE)
def test_a_condition_no_row_satisfies_costs_nothing(db, same, condition):
    rows, requests = same(f"SELECT count(*) FROM {{t}} WHERE {condition}")
    assert rows == [(0,)] and requests == [0]
    plan = explain_text(db, f"EXPLAIN SELECT * FROM nl.users WHERE {condition}")
    assert NO_REQUEST in plan
    with counting(db):
        analyzed = explain_text(db, f"EXPLAIN ANALYZE SELECT * FROM nl.users WHERE {condition}")
        assert requests_of(db) == [0]
    assert NO_REQUEST in analyzed and "rows=0 loops=1" in analyzed


def test_a_literal_comparison_with_null_never_reaches_the_wrapper(db, same):
    # PostgreSQL folds it to false: no scan runs at all.
    for condition in ("email = NULL", "username = NULL", "email LIKE NULL"):
        assert same(f"SELECT count(*) FROM {{t}} WHERE {condition}") == ([(0,)], [])
        assert "One-Time Filter: false" in explain_text(
            db, f"EXPLAIN SELECT * FROM nl.users WHERE {condition}"
        )


@pytest.mark.parametrize(
    "condition, cost",
    [("email IS NULL", "pages"), ("email IS NOT NULL", "pages"),
     ("username IS NOT NULL", "pages"), ("email <> ALL('{}'::text[])", "pages"),
     ("username IN ('user001', NULL)", 1), ("username = ANY('{user002,NULL}'::text[])", 1),
     ("email IN ('user004@example.com', NULL, NULL)", 1)],
)  # fmt: skip
def test_a_null_condition_that_can_be_true_answers_right(same, pool, condition, cost):
    rows, requests = same(f"SELECT username FROM {{t}} WHERE {condition}")
    assert requests == [pages(pool) if cost == "pages" else cost]
    if condition == "email IS NULL":
        assert len(rows) == len(pool.users) // 7  # every seventh user has no email


def test_a_join_on_username_asks_once_per_distinct_non_null_key(db, same):
    sql = "SELECT k.username, u.email FROM nl.keys k JOIN {t} u ON u.username = k.username"
    assert "Nested Loop" in explain_text(db, "EXPLAIN " + sql.replace("{t}", "nl.users"))
    rows, requests = same(sql)
    assert len(rows) == 4
    assert sum(requests) == 3  # user001, user002, user007; the three NULL keys cost nothing
    with counting(db):
        analyzed = explain_text(db, "EXPLAIN ANALYZE " + sql.replace("{t}", "nl.users"))
        assert sum(requests_of(db)) == 3
    assert 'ListUsers Filter: username = "?"' in analyzed


def test_a_join_on_email_asks_nothing_for_a_null_key(db, same, pool):
    sql = "SELECT k.username, u.username FROM nl.keys k JOIN {t} u ON u.email = k.email"
    assert "Nested Loop" in explain_text(db, "EXPLAIN " + sql.replace("{t}", "nl.users"))
    rows, requests = same(sql)
    assert len(rows) == 4
    # 3 distinct emails; the 3 NULL keys and the repeated email cost nothing
    assert sum(requests) == 3 and requests.count(0) == 4
    # email IS NULL still has its rows, in the same session, after the join:
    rows, requests = same("SELECT username FROM {t} WHERE email IS NULL")
    assert len(rows) == len(pool.users) // 7 and requests == [pages(pool)]
    # ... and from then on this session reads the pool for a NULL email key (documented:
    # a plan made earlier may hold the IS NULL), while other columns are unaffected.
    rows, requests = same(sql)
    assert len(rows) == 4 and sum(requests) == 3 + 3 * pages(pool)
    # Leaving the NULL keys out before the join costs nothing for them.
    rows, requests = same(sql + " WHERE k.email IS NOT NULL")
    assert len(rows) == 4 and sum(requests) == 3


def test_a_cached_plan_holding_is_null_keeps_its_rows(db, nl, pool):
    """The soundness of the rule for a NULL key (docs/multicorn.md M10: IS NULL and a NULL key
    arrive alike): plans made before, run later, in either order."""
    db.execute("SET plan_cache_mode = force_generic_plan")
    db.execute("PREPARE pk(text) AS SELECT username FROM nl.users WHERE email = $1")
    db.execute(
        "CREATE FUNCTION pg_temp.no_email() RETURNS SETOF text LANGUAGE plpgsql AS "
        "$$ BEGIN RETURN QUERY SELECT username FROM nl.users WHERE email IS NULL; END $$"
    )
    try:
        with counting(db):
            assert db.execute("EXECUTE pk(NULL)").fetchall() == []
            assert requests_of(db) == [0]
            assert len(db.execute("SELECT pg_temp.no_email()").fetchall()) == len(pool.users) // 7
            assert requests_of(db) == [pages(pool)]
            assert db.execute("EXECUTE pk(NULL)").fetchall() == []
            assert requests_of(db) == [pages(pool)]  # the function's plan is cached now
            assert len(db.execute("SELECT pg_temp.no_email()").fetchall()) == len(pool.users) // 7
    finally:
        db.execute("DEALLOCATE pk")
        db.execute("RESET plan_cache_mode")


def test_an_anti_join_keeps_the_rows_without_a_match(same):
    # u.x IS NULL above an outer join is PostgreSQL's, never the scan's: no row lost.
    rows, _ = same(
        "SELECT k.username FROM nl.keys k LEFT JOIN {t} u ON u.username = k.username "
        "WHERE u.username IS NULL"
    )
    assert len(rows) == 3
    rows, _ = same(
        "SELECT k.email FROM nl.keys k LEFT JOIN {t} u ON u.email = k.email WHERE u.email IS NULL"
    )
    assert len(rows) == 3


@pytest.mark.parametrize("mode", ["auto", "force_generic_plan"])
def test_prepared_any_executed_with_null_costs_nothing(db, nl, mode):
    db.execute(f"SET plan_cache_mode = {mode}")
    db.execute("PREPARE pa(text[]) AS SELECT count(*) FROM nl.users WHERE username = ANY($1)")
    try:
        for value, count, cost in (("NULL", 0, 0), ("'{NULL}'", 0, 0), ("'{}'", 0, 0),
                                   ("'{user001,NULL}'", 1, 1)):  # fmt: skip
            with counting(db):
                assert db.execute(f"EXECUTE pa({value})").fetchall() == [(count,)]
                assert requests_of(db) == [cost]
    finally:
        db.execute("DEALLOCATE pa")
        db.execute("RESET plan_cache_mode")


def test_generic_plan_equality_with_a_null_parameter(db, nl, pool):
    db.execute("SET plan_cache_mode = force_generic_plan")
    db.execute("PREPARE pu(text) AS SELECT username FROM nl.users WHERE username = $1")
    db.execute("PREPARE pe(text) AS SELECT username FROM nl.users WHERE email = $1")
    db.execute(
        "PREPARE pw(text) AS SELECT username FROM nl.users WHERE email = $1 AND $1 IS NOT NULL"
    )
    try:
        with counting(db):
            assert db.execute("EXECUTE pu(NULL)").fetchall() == []
            assert requests_of(db) == [0]
            # Arrives as email IS NULL would; no IS NULL was planned in this session, so
            # it is the parameter: nothing to ask.
            assert db.execute("EXECUTE pe(NULL)").fetchall() == []
            assert requests_of(db) == [0]
            assert db.execute("EXECUTE pu('user003')").fetchall() == [("user003",)]
            assert requests_of(db) == [1]
            # docs/pushdown.md's way out: PostgreSQL decides $1 IS NOT NULL before any scan.
            assert db.execute("EXECUTE pw(NULL)").fetchall() == []
            assert requests_of(db) == []
            assert db.execute("EXECUTE pw('user004@example.com')").fetchall() == [("user004",)]
            assert requests_of(db) == [1]
    finally:
        for name in ("pu", "pe", "pw"):
            db.execute(f"DEALLOCATE {name}")
        db.execute("RESET plan_cache_mode")


@pytest.mark.parametrize(
    "condition",
    ["username = ANY(NULL::text[])", "group_name = ANY(NULL::text[])",
     "username IN (NULL, NULL)", "group_name = ANY('{}'::text[])", "username IS NULL",
     "group_name IS NULL", "membership IS NULL", "given_name = ANY(NULL::text[])",
     "username IN ('a b', NULL)", "username NOT IN ('ann', NULL)"],
)  # fmt: skip
def test_group_members_ask_nothing_for_a_condition_no_row_satisfies(db, same, condition):
    rows, requests = same(f"SELECT count(*) FROM {{t}} WHERE {condition}", table="members")
    assert rows == [(0,)] and requests == [0]
    plan = explain_text(db, f"EXPLAIN SELECT * FROM nl.members WHERE {condition}")
    assert NO_REQUEST in plan
    assert NO_REQUEST in explain_text(
        db, f"EXPLAIN ANALYZE SELECT * FROM nl.members WHERE {condition}"
    )


def test_group_members_null_keys_in_a_join_cost_nothing(db, same):
    db.execute("CREATE TEMP TABLE mk (username text)")
    db.execute("INSERT INTO mk VALUES ('ann'), (NULL), ('cid'), (NULL), ('ann')")
    db.execute("ANALYZE mk")
    sql = "SELECT mk.username, m.group_name FROM mk JOIN {t} m ON m.username = mk.username"
    assert "AdminListGroupsForUser" in explain_text(
        db, "EXPLAIN " + sql.replace("{t}", "nl.members")
    )
    rows, requests = same(
        "SELECT mk.username, m.group_name FROM mk JOIN {t} m ON m.username = mk.username",
        table="members",
    )
    assert len(rows) == 3
    # One scan per outer row: ann, NULL, cid, NULL, ann; a NULL reads no group (and
    # group_members keeps no lookup cache, so ann is asked twice).
    assert requests == [1, 0, 1, 0, 1]


def test_group_members_null_user_column_reads_every_group(same):
    # given_name IS NULL holds for these users (none has one): PostgreSQL's answer is kept.
    rows, _ = same("SELECT username FROM {t} WHERE given_name IS NULL", table="members")
    assert len(rows) == 3


@pytest.mark.parametrize("condition", ["group_name = ANY(NULL::text[])", "group_name IS NULL",
                                       "group_name IN (NULL, NULL)"])  # fmt: skip
def test_groups_ask_nothing_for_a_null_name(db, same, condition):
    rows, requests = same(f"SELECT count(*) FROM {{t}} WHERE {condition}", table="groups")
    assert rows == [(0,)] and requests == [0]
    assert NO_REQUEST in explain_text(db, f"EXPLAIN SELECT * FROM nl.groups WHERE {condition}")
