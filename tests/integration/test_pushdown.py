"""Tier 2: pushdown, LIMIT, lookups in joins and EXPLAIN, counted in Cognito requests."""

from __future__ import annotations

import json
import math

import psycopg
import pytest

from ..support.accounting import counting, requests_of
from ..support.postgres import explain_text

pytestmark = pytest.mark.server

COLUMNS = """
    username text, sub text, email varchar(200), phone_number text, given_name text,
    family_name text, status text, enabled boolean, created_at timestamptz
"""


@pytest.fixture(scope="module")
def tables(setup):
    """pd_users (pushdown on), pd_users_off (off) and pd_users_ci (citext email)."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS citext")
        conn.execute(
            f"CREATE FOREIGN TABLE cognito.pd_users ({COLUMNS}) SERVER cognito_server "
            "OPTIONS (object 'users')"
        )
        conn.execute(
            f"CREATE FOREIGN TABLE cognito.pd_users_off ({COLUMNS}) SERVER cognito_server "
            "OPTIONS (object 'users', pushdown 'false')"
        )
        conn.execute(
            "CREATE FOREIGN TABLE cognito.pd_users_ci (username citext, email citext) "
            "SERVER cognito_server OPTIONS (object 'users')"
        )
    return setup


@pytest.fixture
def q(db, tables):
    """Run a query; return its rows and the requests each scan made."""

    def run(sql, params=None):
        with counting(db):
            rows = db.execute(sql, params).fetchall()
        return rows, requests_of(db)

    return run


def attr(user, name):
    return next((a["Value"] for a in user["Attributes"] if a["Name"] == name), None)


def test_username_lookup_is_one_request(q):
    rows, requests = q("SELECT username, email FROM cognito.pd_users WHERE username = 'user005'")
    assert rows == [("user005", "user005@example.com")]
    assert requests == [1]


def test_a_missing_username_is_zero_rows_in_one_request(q):
    assert q("SELECT * FROM cognito.pd_users WHERE username = 'nobody'") == ([], [1])


@pytest.mark.parametrize("column, attribute", [("sub", "sub"), ("email", "email"),
                                               ("phone_number", "phone_number")])  # fmt: skip
def test_attribute_lookups_are_one_request(q, pool, column, attribute):
    user = pool.users[8]  # user009: has an email and a phone number
    value = attr(user, attribute)
    rows, requests = q(f"SELECT username FROM cognito.pd_users WHERE {column} = %s", (value,))
    assert rows == [(user["Username"],)]
    assert requests == [1]


def test_limit_10_is_one_request(q):
    rows, requests = q("SELECT username FROM cognito.pd_users LIMIT 10")
    assert len(rows) == 10 and requests == [1]
    rows, requests = q("SELECT username FROM cognito.pd_users LIMIT 10 OFFSET 55")
    assert len(rows) == 10 and requests == [2]
    assert q("SELECT username FROM cognito.pd_users LIMIT 0") == ([], [0])


def test_full_scan_is_ceil_n_over_60_requests(q, pool):
    rows, requests = q("SELECT count(*) FROM cognito.pd_users")
    assert rows == [(len(pool.users),)]
    assert requests == [math.ceil(len(pool.users) / 60)]


def test_in_is_one_request_per_distinct_value(q):
    rows, requests = q(
        "SELECT username FROM cognito.pd_users "
        "WHERE username IN ('user001', 'user002', 'user001', 'nobody') ORDER BY 1"
    )
    assert rows == [("user001",), ("user002",)]
    assert requests == [3]


def test_like_prefix_and_enabled_are_filtered_requests(q):
    rows, requests = q("SELECT username FROM cognito.pd_users WHERE username LIKE 'user01%'")
    assert sorted(r[0] for r in rows) == [f"user{i:03d}" for i in range(10, 20)]
    assert requests == [1]
    rows, requests = q("SELECT username FROM cognito.pd_users WHERE NOT enabled")
    assert len(rows) == 15 and requests == [1]


def test_the_most_selective_qual_is_pushed(q):
    rows, requests = q(
        "SELECT username FROM cognito.pd_users WHERE enabled AND username = 'user011' "
        "AND given_name LIKE '%'"
    )
    assert rows == [("user011",)] and requests == [1]


def test_refused_quals_scan_and_postgres_filters(q, pool):
    pages = math.ceil(len(pool.users) / 60)
    rows, requests = q("SELECT username FROM cognito.pd_users WHERE email ILIKE 'USER005@%'")
    assert rows == [("user005",)] and requests == [pages]
    # citext compares case-insensitively: pushing email = ... would lose this row.
    rows, requests = q(
        "SELECT username FROM cognito.pd_users_ci WHERE email = 'USER005@Example.COM'"
    )
    assert rows == [("user005",)] and requests == [pages]


def test_pushdown_off_reads_the_whole_pool(q, pool):
    rows, requests = q("SELECT username FROM cognito.pd_users_off WHERE username = 'user005'")
    assert rows == [("user005",)]
    assert requests == [math.ceil(len(pool.users) / 60)]


def test_lookup_join_is_one_request_per_distinct_outer_value(db, q):
    db.execute("CREATE TEMP TABLE wanted (username text)")
    names = [f"user{1 + i % 5:03d}" for i in range(19)] + ["nobody"]
    with db.cursor() as cur:
        cur.executemany("INSERT INTO wanted VALUES (%s)", [(n,) for n in names])
    db.execute("ANALYZE wanted")
    sql = (
        "SELECT w.username, u.email FROM wanted w "
        "JOIN cognito.pd_users u ON u.username = w.username"
    )
    plan = explain_text(db, "EXPLAIN " + sql)
    assert "Nested Loop" in plan and 'ListUsers Filter: username = "?"' in plan
    rows, requests = q(sql)
    assert len(rows) == 19
    assert sum(requests) == 6  # 5 distinct users and 'nobody', each asked once


def test_lookup_join_on_sub(db, q, pool):
    subs = [attr(u, "sub") for u in pool.users[:20]]
    db.execute("CREATE TEMP TABLE subs (sub text)")
    with db.cursor() as cur:
        cur.executemany("INSERT INTO subs VALUES (%s)", [(s,) for s in subs])
    db.execute("ANALYZE subs")
    rows, requests = q("SELECT u.username FROM subs s JOIN cognito.pd_users u ON u.sub = s.sub")
    assert sorted(r[0] for r in rows) == sorted(u["Username"] for u in pool.users[:20])
    assert sum(requests) == 20


def test_explain_shows_the_request_plan_and_no_secret(db, tables):
    plan = "\n".join(
        r[0]
        for r in db.execute(
            "EXPLAIN VERBOSE SELECT * FROM cognito.pd_users "
            "WHERE email = 'a@b.c' AND given_name ILIKE 'x%'"
        )
    )
    assert 'Cognito: ListUsers Filter: email = "a@b.c"' in plan
    assert "page size 60, about 1 request" in plan
    assert "left to PostgreSQL: given_name ILIKE 'x%'" in plan
    assert "Cognito: region us-east-1, user pool us-east-1_" in plan
    assert "testing-secret" not in plan
    plain = explain_text(db, "EXPLAIN SELECT * FROM cognito.pd_users LIMIT 10")
    assert "ListUsers (no filter), page size 10, at most 10 users, about 1 request" in plain
    assert "Limit" not in plain  # accepted: PostgreSQL trusts the wrapper with it


def test_planner_estimates_follow_the_pushed_quals(db, tables, pool):
    def rows_of(sql):
        plan = db.execute("EXPLAIN (FORMAT JSON) " + sql).fetchone()[0]
        return plan[0]["Plan"]["Plan Rows"]

    assert rows_of("SELECT * FROM cognito.pd_users") == len(pool.users)
    assert rows_of("SELECT * FROM cognito.pd_users WHERE username = 'x'") == 1
    assert rows_of("SELECT * FROM cognito.pd_users WHERE email = 'x'") == 2


def test_count_of_a_small_pool_does_not_trigger_jit(db, tables):
    plan = db.execute("EXPLAIN (ANALYZE, FORMAT JSON) SELECT count(*) FROM cognito.pd_users")
    top = plan.fetchone()[0][0]
    jit_above = float(db.execute("SHOW jit_above_cost").fetchone()[0])
    assert top["Plan"]["Total Cost"] < jit_above
    assert "JIT" not in json.dumps(top)
