"""Tier 2: what queries cost in money, planner cost and time.

Billing: a username lookup, an IN list and a lookup join send no AdminGetUser (which
counts each user found as a monthly active user) unless the server asks for it.  JIT:
with PostgreSQL's default settings, small pools plan below ``jit_above_cost``.  Deadline:
a stalled endpoint fails a query at ``request_deadline``, not read_timeout x max_attempts.
Requests are counted per operation by the fault proxy between the wrapper and moto.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import psycopg
import pytest

from cognito_fdw.tools.demousers import bulk_users
from cognito_fdw.tools.seed import create_users

from ..support.postgres import create_server, explain_text
from ..support.proxy import Fault
from ..support.reliability import record

pytestmark = pytest.mark.server

KEYS = ["user001", "user002", "user002", "user007", "nobody"]  # 3 users, 4 distinct names


@pytest.fixture(scope="module")
def billing(setup, pool, proxy):
    """bill.users (defaults) and bill.users_agu (username_lookup 'admin_get_user'), both
    reading the shared pool through the proxy; bill.keys holds KEYS."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA bill")
        create_server(conn, "bill_srv", pool.pool_id, proxy.url)
        create_server(conn, "bill_agu", pool.pool_id, proxy.url, username_lookup="admin_get_user")
        for table, server in (("users", "bill_srv"), ("users_agu", "bill_agu")):
            conn.execute(
                f"CREATE FOREIGN TABLE bill.{table} (username text, email text) "
                f"SERVER {server} OPTIONS (object 'users')"
            )
        conn.execute("CREATE TABLE bill.keys (username text)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO bill.keys VALUES (%s)", [(k,) for k in KEYS])
        conn.execute("ANALYZE bill.keys")
    return setup


QUERIES = {
    "username =": "SELECT username, email FROM {t} WHERE username = 'user005'",
    "username IN": "SELECT username, email FROM {t} WHERE username IN "
    "('user001', 'user002', 'nobody') ORDER BY 1",
    "lookup join": "SELECT k.username, u.email FROM bill.keys k "
    "JOIN {t} u ON u.username = k.username ORDER BY 1",
}
# ListUsers requests of each query by default: one per distinct value that could be a user.
LOOKUPS = {"username =": 1, "username IN": 3, "lookup join": 4}


def sent(proxy, sql, db):
    """The rows of ``sql`` and the requests it sent, by operation (DescribeUserPool aside)."""
    proxy.arm()
    rows = db.execute(sql).fetchall()
    counts = Counter(r.operation for r in proxy.requests() if r.operation != "DescribeUserPool")
    return rows, dict(counts)


@pytest.mark.parametrize("shape", list(QUERIES))
def test_username_lookups_send_no_admin_get_user_by_default(billing, db, proxy, shape):
    rows, counts = sent(proxy, QUERIES[shape].format(t="bill.users"), db)
    assert counts == {"ListUsers": LOOKUPS[shape]}  # no AdminGetUser: nobody billed
    billed_rows, billed = sent(proxy, QUERIES[shape].format(t="bill.users_agu"), db)
    assert billed_rows == rows and rows  # the same answer either way
    assert billed.get("AdminGetUser", 0) == LOOKUPS[shape]


def test_the_lookup_join_is_a_nested_loop_of_list_users(billing, db):
    plan = explain_text(db, "EXPLAIN " + QUERIES["lookup join"].format(t="bill.users"))
    assert "Nested Loop" in plan
    assert 'Cognito: ListUsers Filter: username = "?"' in plan
    assert "AdminGetUser" not in plan and "billed" not in plan


def test_explain_names_the_operation_and_says_when_it_is_billed(billing, db):
    def explain(table):
        return explain_text(db, f"EXPLAIN SELECT * FROM {table} WHERE username = 'user005'")

    default = explain("bill.users")
    assert 'ListUsers Filter: username = "user005"' in default and "billed" not in default
    billed = explain("bill.users_agu")
    assert 'AdminGetUser Username: "user005"' in billed
    assert "billed: AdminGetUser counts each user it finds as a monthly active user" in billed


# -- JIT on small pools ------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_pools(setup, cognito):
    """Pools of 200 and 2,500 users, each imported (IMPORT FOREIGN SCHEMA) into jit_<n>,
    plus a 7-column table; a local table of three of their usernames."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        for size in (200, 2500):
            pool_id = cognito.create_user_pool(PoolName=f"jit-{size}")["UserPool"]["Id"]
            create_users(cognito, pool_id, bulk_users(size), threads=16)
            create_server(conn, f"jit_srv_{size}", pool_id, setup.endpoint, region="us-east-1")
            conn.execute(f"CREATE SCHEMA jit_{size}")
            conn.execute(
                f"IMPORT FOREIGN SCHEMA cognito LIMIT TO (users) FROM SERVER jit_srv_{size} "
                f"INTO jit_{size}"
            )
            conn.execute(
                f"CREATE FOREIGN TABLE jit_{size}.seven (username text, sub text, email text, "
                "given_name text, status text, enabled boolean, created_at timestamptz) "
                f"SERVER jit_srv_{size} OPTIONS (object 'users')"
            )
        conn.execute("CREATE TABLE jit_keys (username text)")
        conn.execute("INSERT INTO jit_keys VALUES ('bench000001'), ('bench000100'), ('x')")
        conn.execute("ANALYZE jit_keys")
    return setup


def analyzed(db, sql):
    """EXPLAIN (ANALYZE, FORMAT JSON) of ``sql`` with every JIT setting at its default."""
    for setting in ("jit", "jit_above_cost", "jit_inline_above_cost", "jit_optimize_above_cost"):
        db.execute(f"RESET {setting}")
    return db.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).fetchone()[0][0]


@pytest.mark.parametrize("size", [200, 2500])
@pytest.mark.parametrize("table", ["users", "seven"])
def test_no_jit_on_a_small_pool_with_default_settings(small_pools, db, size, table):
    for sql, rows in ((f"SELECT * FROM jit_{size}.{table}", size),
                      (f"SELECT count(*) FROM jit_{size}.{table}", 1)):  # fmt: skip
        top = analyzed(db, sql)
        assert "JIT" not in top, (sql, top["JIT"])
        assert top["Plan"]["Total Cost"] < float(db.execute("SHOW jit_above_cost").fetchone()[0])
        assert top["Plan"]["Actual Rows"] == rows


@pytest.mark.parametrize("size", [200, 2500])
def test_count_plans_start_no_later_than_they_end(small_pools, db, size):
    for sql in (
        f"SELECT count(*) FROM jit_{size}.users",
        f"SELECT count(*) FROM jit_{size}.users WHERE username = 'bench000001'",
        f"SELECT count(*) FROM jit_{size}.users WHERE username = ANY(NULL::text[])",
    ):
        plan = db.execute("EXPLAIN (FORMAT JSON) " + sql).fetchone()[0][0]["Plan"]
        nodes = [plan, *plan.get("Plans", [])]
        for node in nodes:
            assert node["Startup Cost"] <= node["Total Cost"], (sql, node)


@pytest.mark.parametrize("size", [200, 2500])
def test_a_join_still_uses_the_parameterized_lookup(small_pools, db, size):
    sql = (
        f"SELECT k.username, u.email FROM jit_keys k JOIN jit_{size}.users u "
        "ON u.username = k.username"
    )
    top = analyzed(db, sql)
    text = json.dumps(top)
    assert top["Plan"]["Node Type"] == "Nested Loop", text
    assert "JIT" not in top
    assert top["Plan"]["Actual Rows"] == 2  # bench000001 and bench000100; 'x' is nobody


# -- a total deadline per request --------------------------------------------------------


@pytest.fixture(scope="module")
def stalled(setup, pool, proxy):
    """stall.lowered (request_deadline '3' on the table) and stall.defaults, on a server
    whose endpoint (the proxy, armed per test) accepts and never answers."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA stall")
        create_server(conn, "stall_srv", pool.pool_id, proxy.url)
        conn.execute(
            "CREATE FOREIGN TABLE stall.lowered (username text) SERVER stall_srv "
            "OPTIONS (object 'users', request_deadline '3')"
        )
        conn.execute(
            "CREATE FOREIGN TABLE stall.defaults (username text) SERVER stall_srv "
            "OPTIONS (object 'users')"
        )
    return setup


def stalled_query(db, proxy, table):
    proxy.arm(Fault("stall", times=-1, seconds=120))
    started = time.monotonic()
    with pytest.raises(psycopg.Error) as caught:
        db.execute(f"SELECT count(*) FROM stall.{table}")
    elapsed = time.monotonic() - started
    proxy.arm()
    return caught.value, elapsed


def test_a_stalled_endpoint_fails_at_the_lowered_deadline(stalled, db, proxy):
    err, elapsed = stalled_query(db, proxy, "lowered")
    # read_timeout 15 s x max_attempts 5 (the defaults) would hold it 75 s and more.
    assert 3 <= elapsed < 8
    message = err.diag.message_primary
    assert "got no answer within request_deadline (3 s) after 1 attempt" in message
    assert "DescribeUserPool" in message or "ListUsers" in message
    assert "request_deadline" in err.diag.message_hint
    assert "Error in python" not in message and "internal error" not in message
    assert db.execute("SELECT 1").fetchone() == (1,)  # the session stays usable


def test_a_stalled_endpoint_fails_within_30_s_with_default_options(stalled, db, proxy):
    err, elapsed = stalled_query(db, proxy, "defaults")
    assert 30 <= elapsed < 36
    assert "request_deadline (30 s)" in err.diag.message_primary
    record(
        "fault",
        "endpoint accepts and never answers, default options (read_timeout 15 s x 5 attempts)",
        f"failed after {elapsed:.0f} s: {err.diag.message_primary}",
    )


def test_statement_timeout_still_ends_it_sooner(stalled, db, proxy):
    db.execute("SET statement_timeout = '1s'")
    try:
        err, elapsed = stalled_query(db, proxy, "lowered")
    finally:
        db.execute("RESET statement_timeout")
    assert elapsed < 2.5
    assert "cancel" in err.diag.message_primary
