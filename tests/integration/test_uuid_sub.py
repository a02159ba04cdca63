"""Tier 2: ``sub`` as IMPORT FOREIGN SCHEMA declares it, looked up and joined at one request
per key, and EXPLAIN of every such plan safe.

IMPORT declares ``sub text``: Multicorn converts a join parameter of a by-reference type
(uuid is one) from an empty value under EXPLAIN, in C, before any Python runs
(docs/multicorn.md H1: EXPLAIN of a by-reference parameter crashes), so only a text ``sub`` can
be a path key.  A uuid ``sub`` a user declares is pushed for
constants (a Const is a real value) and never parameterized.  A cast written on the outer
side (``o.user_sub::text``) is no Param: Multicorn reads a type from it that is garbage
(``lookup failed for type N``), so docs/pushdown.md joins a text column, or a uuid one through a
subquery that casts it.
"""

from __future__ import annotations

import re

import psycopg
import pytest

from ..support.accounting import counting, requests_of
from ..support.postgres import explain_text

pytestmark = pytest.mark.server

README_JOIN = (
    "SELECT o.id, u.username FROM us.orders o JOIN us.users u ON u.sub = o.user_sub WHERE u.enabled"
)
UUID_JOIN = (
    "SELECT o.id, u.username FROM (SELECT id, user_sub::text AS user_sub FROM us.orders_uuid "
    "OFFSET 0) o JOIN us.users u ON u.sub = o.user_sub"
)


def sub_of(user) -> str:
    return next(a["Value"] for a in user["Attributes"] if a["Name"] == "sub")


@pytest.fixture(scope="module")
def us(setup, pool):
    """Schema us: the imported tables, orders keyed by 5 distinct subs (two repeated, one
    NULL) as text and as uuid, a user-declared uuid sub, and local copies to compare with."""
    subs = [sub_of(user) for user in pool.users[:5]]
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA us")
        conn.execute(
            "IMPORT FOREIGN SCHEMA cognito LIMIT TO (users, group_members) "
            "FROM SERVER cognito_server INTO us"
        )
        conn.execute(
            "CREATE FOREIGN TABLE us.users_uuid (username text, sub uuid) "
            "SERVER cognito_server OPTIONS (object 'users')"
        )
        for table, key in (("orders", "text"), ("orders_uuid", "uuid")):
            conn.execute(f"CREATE TABLE us.{table} (id int, user_sub {key})")
            for i, sub in enumerate([*subs, subs[0], subs[1], None]):
                conn.execute(f"INSERT INTO us.{table} VALUES (%s, %s)", (i, sub))
            conn.execute(f"ANALYZE us.{table}")
        conn.execute("CREATE TABLE us.local_users AS SELECT username, sub, enabled FROM us.users")
    return subs


def started(db):
    return db.execute("SELECT pg_postmaster_start_time()").fetchone()[0]


def test_import_declares_sub_text(db, us):
    types = dict(
        db.execute(
            "SELECT table_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'us' AND column_name = 'sub' "
            "AND table_name IN ('users', 'group_members')"
        ).fetchall()
    )
    assert types == {"users": "text", "group_members": "text"}


def test_lookup_on_the_imported_sub_is_one_request(db, us, pool):
    with counting(db):
        rows = db.execute("SELECT username FROM us.users WHERE sub = %s", (us[2],)).fetchall()
        assert requests_of(db) == [1]
    assert rows == [(pool.users[2]["Username"],)]


def test_the_readme_join_costs_at_most_one_request_per_distinct_key(db, us):
    plan = explain_text(db, "EXPLAIN " + README_JOIN)
    assert "Filter: (enabled AND (sub = o.user_sub))" in plan
    assert 'ListUsers Filter: sub = "?"' in plan
    local = README_JOIN.replace("us.users", "us.local_users")
    expected = sorted(db.execute(local).fetchall())
    with counting(db):
        rows = sorted(db.execute(README_JOIN).fetchall())
        requests = requests_of(db)
    assert rows == expected and len(rows) == 7
    # 5 distinct keys: one request each, the repeats from the statement's cache, the NULL
    # key none.
    assert sum(requests) <= 5


def test_a_uuid_key_joined_through_a_casting_subquery_costs_one_request_per_key(db, us):
    local = UUID_JOIN.replace("us.users", "us.local_users")
    expected = sorted(db.execute(local).fetchall())
    with counting(db):
        rows = sorted(db.execute(UUID_JOIN).fetchall())
        requests = requests_of(db)
    assert rows == expected and len(rows) == 7
    assert sum(requests) <= 5


def test_a_declared_uuid_sub_pushes_constant_equality_in_canonical_form(db, us, pool):
    sql = "SELECT username FROM us.users_uuid WHERE sub = %s"
    plan = explain_text(
        db, f"EXPLAIN SELECT username FROM us.users_uuid WHERE sub = '{us[3].upper()}'"
    )
    assert f'ListUsers Filter: sub = "{us[3]}"' in plan
    with counting(db):
        rows = db.execute(sql, (us[3].upper(),)).fetchall()
        assert requests_of(db) == [1]
    assert rows == [(pool.users[3]["Username"],)]


def test_a_declared_uuid_sub_is_never_a_join_parameter(db, us):
    plan = explain_text(
        db,
        "EXPLAIN SELECT o.id, u.username FROM us.orders_uuid o "
        "JOIN us.users_uuid u ON u.sub = o.user_sub",
    )
    assert "sub = o.user_sub" not in plan.split("Foreign Scan")[1].split("->")[0]


@pytest.mark.parametrize("join", [README_JOIN, UUID_JOIN], ids=["readme", "uuid-subquery"])
def test_explain_analyze_and_generic_plans_of_the_sub_joins_never_crash(db, us, setup, join):
    before = started(db)
    db.execute("SET plan_cache_mode = force_generic_plan")
    try:
        assert "Foreign Scan" in explain_text(db, "EXPLAIN " + join)
        assert "Foreign Scan" in explain_text(db, "EXPLAIN ANALYZE " + join)
        db.execute(f"PREPARE sj AS {join} AND o.id < $1")
        assert "Foreign Scan" in explain_text(db, "EXPLAIN EXECUTE sj(4)")
        assert "Foreign Scan" in explain_text(db, "EXPLAIN ANALYZE EXECUTE sj(4)")
        assert len(db.execute("EXECUTE sj(4)").fetchall()) == 4
        db.execute("PREPARE sl(text) AS SELECT username FROM us.users WHERE sub = $1")
        assert 'sub = "?"' in explain_text(db, f"EXPLAIN EXECUTE sl('{us[0]}')")
        assert len(db.execute(f"EXECUTE sl('{us[0]}')").fetchall()) == 1
    finally:
        db.execute("DEALLOCATE ALL")
        db.execute("RESET plan_cache_mode")
    assert started(db) == before
    assert not re.search(r"terminated by signal|server process .* exited", setup.log())
