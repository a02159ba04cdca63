"""Tier 2: comparisons under a nondeterministic collation answer as PostgreSQL does.

Multicorn passes no collation with a condition (docs/multicorn.md H10: quals carry no collation), so
while the database has a nondeterministic collation the wrapper pushes no text condition; every
query here runs on the foreign table and on a local table with the same rows and the same column
collations, and the answers must be equal (and hold the row an exact match would miss).  The
collations live in databases of this module's own: a nondeterministic collation in the shared test
database would turn pushdown off for every other test.
"""

from __future__ import annotations

import contextlib
import threading
import time

import psycopg
import pytest

from cognito_fdw.tools.seed import create_users

from ..support.accounting import counting, requests_of
from ..support.pool import new_user
from ..support.postgres import LOGIN, create_server, create_table, explain_text, new_role, role_dsn

pytestmark = pytest.mark.server

USERS = {
    "alice": {"email": "Mixed.Case@Example.COM", "given_name": "Zoë"},
    "bob": {"email": "bob@example.com", "given_name": "zoe"},
    "carol": {"given_name": "ZOË"},
    "dave": {"email": "dave@example.com", "given_name": "Dave"},
}
GROUPS = {"Admins": ["alice"], "staff": ["bob", "dave"]}
CI = "CREATE COLLATION {name} (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
AI = "CREATE COLLATION ai (provider = icu, locale = 'und-u-ks-level1', deterministic = false)"
NONDETERMINISTIC = "nondeterministic collations in this database"


@pytest.fixture(scope="module")
def pool_id(setup, cognito):
    pool_id = cognito.create_user_pool(PoolName="cognito-fdw-collations")["UserPool"]["Id"]
    create_users(cognito, pool_id, (new_user(name, attrs) for name, attrs in USERS.items()))
    for group, members in GROUPS.items():
        cognito.create_group(UserPoolId=pool_id, GroupName=group)
        for username in members:
            cognito.admin_add_user_to_group(UserPoolId=pool_id, GroupName=group, Username=username)
    return pool_id


@contextlib.contextmanager
def database(setup, pool_id, name):
    """A database of its own with the wrapper's server on the pool; yields its dsn."""
    with psycopg.connect(setup.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    dsn = f"{setup.dsn} dbname={name}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION multicorn")
        create_server(conn, "coll_server", pool_id, setup.endpoint)
    try:
        yield dsn
    finally:
        with psycopg.connect(setup.dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


TABLES = {
    "plain": "username text, email text, given_name text, status text, enabled boolean",
    "ci_users": "username text COLLATE ci, email text COLLATE ci, given_name text COLLATE ai",
    "members": "group_name text COLLATE ci, username text COLLATE ci, membership text",
    "groups": "group_name text COLLATE ci, description text",
}
OBJECTS = {"members": "group_members", "groups": "groups"}

FUNCTIONS = """
CREATE FUNCTION {prefix}by_email_sql(e text) RETURNS SETOF text LANGUAGE sql STABLE AS
  $$ SELECT username FROM {prefix}plain WHERE email = e COLLATE ci $$;
CREATE FUNCTION {prefix}by_email_plpgsql(e text) RETURNS SETOF text LANGUAGE plpgsql AS
  $$ BEGIN RETURN QUERY SELECT username FROM {prefix}plain WHERE email = e COLLATE ci; END $$;
CREATE VIEW {prefix}ci_view AS
  SELECT username FROM {prefix}plain WHERE email = 'MIXED.case@example.com' COLLATE ci;
"""


@pytest.fixture(scope="module")
def coll(setup, pool_id):
    """Database coll: collations ci (case-insensitive) and ai (accents too), foreign tables
    and ``local_`` copies with the same columns, views and functions on each."""
    with database(setup, pool_id, "coll") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(CI.format(name="ci"))
            conn.execute(AI)
            for table, columns in TABLES.items():
                create_table(
                    conn, table, columns, "coll_server", object=OBJECTS.get(table, "users")
                )
                conn.execute(f"CREATE TABLE local_{table} ({columns})")
                conn.execute(f"INSERT INTO local_{table} SELECT * FROM {table}")
            conn.execute(
                f"CREATE FOREIGN TABLE asserted ({TABLES['plain']}) SERVER coll_server "
                "OPTIONS (object 'users', deterministic_collations 'true')"
            )
            conn.execute("CREATE TABLE keys (e text COLLATE ci)")
            conn.execute("INSERT INTO keys VALUES ('BOB@example.com'), ('mixed.case@example.com')")
            conn.execute("ANALYZE keys")
            for prefix in ("", "local_"):
                conn.execute(FUNCTIONS.format(prefix=prefix))
        yield dsn


def connect(dsn):
    conn = psycopg.connect(dsn, autocommit=True)
    conn.notices = []
    conn.add_notice_handler(lambda diag: conn.notices.append(diag.message_primary or ""))
    return conn


def answer(conn, sql, params=None):
    """The sorted rows, or the error's message: the two tables must fail alike too."""
    try:
        return sorted(conn.execute(sql, params).fetchall())
    except psycopg.Error as exc:
        return exc.diag.message_primary


CASES = [
    # (query with {p} before each table, the answer both must give)
    ("SELECT username FROM {p}ci_users WHERE email = 'mixed.case@example.com'", [("alice",)]),
    ("SELECT username FROM {p}ci_users WHERE username = 'ALICE'", [("alice",)]),
    ("SELECT username FROM {p}ci_users WHERE username IN ('ALICE', 'Bob', 'x y')",
     [("alice",), ("bob",)]),
    ("SELECT username FROM {p}ci_users WHERE given_name = 'zoe'",
     [("alice",), ("bob",), ("carol",)]),
    ("SELECT username FROM {p}plain WHERE email = 'MIXED.CASE@example.com' COLLATE ci",
     [("alice",)]),
    ("SELECT username FROM {p}plain WHERE username COLLATE ci = ANY(ARRAY['ALICE', 'DAVE'])",
     [("alice",), ("dave",)]),
    ("SELECT username FROM {p}plain WHERE status = 'force_change_password' COLLATE ci",
     [("alice",), ("bob",), ("carol",), ("dave",)]),
    ("SELECT username FROM {p}plain WHERE email LIKE 'mixed%' COLLATE ci",
     "nondeterministic collations are not supported for LIKE"),
    ("SELECT k.e, u.username FROM keys k JOIN {p}ci_users u ON u.email = k.e",
     [("BOB@example.com", "bob"), ("mixed.case@example.com", "alice")]),
    ("SELECT group_name, username FROM {p}members WHERE username = 'ALICE'",
     [("Admins", "alice")]),
    ("SELECT username FROM {p}members WHERE group_name = 'STAFF'", [("bob",), ("dave",)]),
    ("SELECT group_name FROM {p}groups WHERE group_name IN ('admins', 'nobody')",
     [("Admins",)]),
    ("SELECT * FROM {p}ci_view", [("alice",)]),
    ("SELECT * FROM {p}by_email_sql('MIXED.CASE@EXAMPLE.COM')", [("alice",)]),
    ("SELECT * FROM {p}by_email_plpgsql('mixed.case@EXAMPLE.com')", [("alice",)]),
]  # fmt: skip


@pytest.mark.parametrize("sql, expected", CASES)
def test_a_nondeterministic_comparison_answers_as_postgresql(coll, sql, expected):
    with connect(coll) as conn:
        local = answer(conn, sql.format(p="local_"))
        assert local == expected  # the case is what the test says it is
        for _ in range(2):  # PL/pgSQL plans at the first call and reuses the plan
            assert answer(conn, sql.format(p="")) == local


def test_a_prepared_generic_plan_under_a_collation_answers_as_postgresql(coll):
    with connect(coll) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        for prefix in ("", "local_"):
            conn.execute(
                f"PREPARE {prefix}q(text) AS SELECT username FROM {prefix}ci_users WHERE email = $1"
            )
        for value, expected in (("BOB@EXAMPLE.COM", [("bob",)]), (None, []),
                                ("mixed.case@example.com", [("alice",)])):  # fmt: skip
            argument = "NULL" if value is None else f"'{value}'"
            local = answer(conn, f"EXECUTE local_q({argument})")
            assert local == expected
            assert answer(conn, f"EXECUTE q({argument})") == local


def test_explain_says_why_and_names_the_collations(coll):
    with connect(coll) as conn:
        plan = explain_text(
            conn, "EXPLAIN SELECT * FROM plain WHERE email = 'x' COLLATE ci AND enabled"
        )
        assert f"{NONDETERMINISTIC}: ai, ci" in plan
        assert "left to PostgreSQL: email = 'x': the database has a nondeterministic" in plan
        # enabled has no collation: still pushed
        assert 'ListUsers Filter: status = "Enabled"' in plan
        # No lookup per key while a collation may apply: a join reads the pool once.
        join = explain_text(conn, "EXPLAIN SELECT * FROM keys k JOIN ci_users u ON u.email = k.e")
        assert "lookup" not in join and "ListUsers (no filter)" in join


def test_a_uuid_sub_has_no_collation_and_is_still_pushed(coll, pool_id, cognito):
    sub = next(
        a["Value"]
        for a in cognito.admin_get_user(UserPoolId=pool_id, Username="bob")["UserAttributes"]
        if a["Name"] == "sub"
    )
    with connect(coll) as conn:
        conn.execute(
            "CREATE FOREIGN TABLE IF NOT EXISTS by_sub (username text, sub uuid) "
            "SERVER coll_server OPTIONS (object 'users')"
        )
        sql = f"SELECT username FROM by_sub WHERE sub = '{sub.upper()}'"
        assert f'Filter: sub = "{sub}"' in explain_text(conn, "EXPLAIN " + sql)
        with counting(conn):
            assert answer(conn, sql) == [("bob",)]
            assert requests_of(conn) == [1]


def test_the_table_option_asserts_deterministic_comparisons(coll):
    with connect(coll) as conn:
        sql = "SELECT username FROM asserted WHERE username = 'bob'"
        assert 'ListUsers Filter: username = "bob"' in explain_text(conn, "EXPLAIN " + sql)
        with counting(conn):
            assert answer(conn, sql) == [("bob",)]
            assert requests_of(conn) == [1]
        # The trade-off the README states: a query that does compare under one of them
        # gets Cognito's exact match.
        assert answer(conn, "SELECT username FROM asserted WHERE username = 'BOB' COLLATE ci") == []


@pytest.fixture(scope="module")
def bare(setup, pool_id):
    """Database coll_bare: no nondeterministic collation; a users table and a local copy."""
    with database(setup, pool_id, "coll_bare") as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                f"CREATE FOREIGN TABLE plain ({TABLES['plain']}) SERVER coll_server "
                "OPTIONS (object 'users')"
            )
            conn.execute(f"CREATE TABLE local_plain ({TABLES['plain']})")
            conn.execute("INSERT INTO local_plain SELECT * FROM plain")
            conn.execute("CREATE TABLE keys AS SELECT email AS e FROM local_plain")
            conn.execute("INSERT INTO keys SELECT upper(email) FROM local_plain")
            conn.execute("ANALYZE keys")
        yield dsn


def test_a_collation_created_or_dropped_is_seen_at_once(bare):
    sql = "SELECT username FROM {p}plain WHERE email = 'mixed.case@example.com' COLLATE ci"
    with connect(bare) as conn, connect(bare) as other:
        assert 'Filter: email = "bob@example.com"' in explain_text(
            conn, "EXPLAIN SELECT * FROM plain WHERE email = 'bob@example.com'"
        )
        # Created in this very transaction:
        conn.execute("BEGIN")
        conn.execute(CI.format(name="ci"))
        assert answer(conn, sql.format(p="")) == answer(conn, sql.format(p="local_"))
        assert answer(conn, sql.format(p="")) == [("alice",)]
        conn.execute("ROLLBACK")
        # Committed by another session while this one is inside a transaction:
        conn.execute("BEGIN")
        assert "ListUsers Filter" in explain_text(
            conn, "EXPLAIN SELECT * FROM plain WHERE username = 'a'"
        )
        other.execute(CI.format(name="ci"))
        assert answer(conn, sql.format(p="")) == [("alice",)]
        conn.execute("COMMIT")
        other.execute("DROP COLLATION ci")
        assert "ListUsers Filter" in explain_text(
            conn, "EXPLAIN SELECT * FROM plain WHERE username = 'a'"
        )


def test_another_sessions_temporary_collation_leaves_this_ones_pushdown_on(bare, setup):
    # A role with TEMP only must not turn every other session's lookups
    # into full reads of the pool; the session's own temporary collation still counts.
    role = new_role_with_temp(bare)
    sql = "SELECT username FROM {p}plain WHERE email = 'mixed.case@example.com'"
    with connect(bare) as conn, connect(role_dsn(bare, role)) as other:
        other.execute(CI.format(name="pg_temp.tci"))
        plan = explain_text(conn, "EXPLAIN SELECT * FROM plain WHERE username = 'bob'")
        assert 'Filter: username = "bob"' in plan and "tci" not in plan
        assert answer(conn, sql.format(p="")) == answer(conn, sql.format(p="local_"))
        conn.execute(CI.format(name="pg_temp.mine"))
        plan = explain_text(conn, "EXPLAIN SELECT * FROM plain WHERE username = 'bob'")
        assert "mine" in plan and "ListUsers (no filter)" in plan
        assert "tci" not in plan


def new_role_with_temp(dsn) -> str:
    with psycopg.connect(dsn, autocommit=True) as admin:
        role = new_role(admin)
        admin.execute(f"GRANT TEMP ON DATABASE coll_bare TO {role}")
    return role


def test_a_locked_catalog_is_taken_for_a_nondeterministic_collation(bare):
    # The wrapper never waits for pg_collation's lock (a wait with interrupts held could
    # not be cancelled): taken by another session, it pushes no text condition.
    with connect(bare) as conn, connect(bare) as other:
        other.execute("BEGIN")
        other.execute("LOCK pg_collation IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        plan = explain_text(conn, "EXPLAIN SELECT * FROM plain WHERE username = 'bob'")
        assert time.monotonic() - started < 2
        assert "(pg_collation could not be read)" in plan and "ListUsers (no filter)" in plan
        assert answer(conn, "SELECT username FROM plain WHERE username = 'bob'") == [("bob",)]
        other.execute("ROLLBACK")


def test_cancels_timeouts_and_concurrent_ddl_during_catalog_reads(bare, setup):
    """Joins that read pg_collation once per outer row, cancelled and timed out at random,
    while another session creates and drops a nondeterministic collation: every answer
    that completes is PostgreSQL's, and no backend crashes."""
    with psycopg.connect(setup.dsn, autocommit=True) as admin:
        started = admin.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    sql = "SELECT k.e, u.username FROM keys k JOIN {p}plain u ON u.email = k.e"
    stop = threading.Event()

    def churn():
        with connect(bare) as ddl:
            while not stop.is_set():
                ddl.execute(CI.format(name="churn"))
                ddl.execute("DROP COLLATION churn")

    worker = threading.Thread(target=churn)
    outcomes = {"answered": 0, "cancelled": 0}
    with connect(bare) as conn, connect(bare) as canceller:
        conn.execute("SET enable_hashjoin = off")
        conn.execute("SET enable_mergejoin = off")
        pid = conn.info.backend_pid
        expected = answer(conn, sql.format(p="local_"))
        worker.start()
        try:
            for i in range(30):
                conn.execute(f"SET statement_timeout = '{5 + 10 * (i % 4)}ms'")
                cancel = threading.Thread(
                    target=lambda delay: (
                        time.sleep(delay),
                        canceller.execute("SELECT pg_cancel_backend(%s)", [pid]),
                    ),
                    args=(0.002 * (i % 7),),
                )
                if i % 3 == 0:
                    cancel.start()
                got = answer(conn, sql.format(p=""))
                if i % 3 == 0:
                    cancel.join()  # lands in the query or in the idle session, nowhere else
                if isinstance(got, list):
                    assert got == expected
                    outcomes["answered"] += 1
                else:
                    assert got.startswith("canceling statement"), got
                    outcomes["cancelled"] += 1
        finally:
            stop.set()
            worker.join()
        conn.execute("RESET statement_timeout")
        assert answer(conn, sql.format(p="")) == expected
    assert outcomes["answered"] and outcomes["cancelled"], outcomes
    with psycopg.connect(setup.dsn, autocommit=True) as admin:
        assert admin.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == started


def test_another_roles_collations_cannot_flood_or_forge_explain_lines(setup, pool_id):
    # Red team: a role with CREATE on a schema made 300 nondeterministic collations, one
    # named with a newline; every role's EXPLAIN listed them all, and the newline started a
    # line of the attacker's own text in the plan.
    with database(setup, pool_id, "coll_names") as dsn:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"CREATE ROLE coll_maker{LOGIN}")
            admin.execute("CREATE SCHEMA maker AUTHORIZATION coll_maker")
            admin.execute("CREATE FOREIGN TABLE plain (username text) SERVER coll_server "
                          "OPTIONS (object 'users')")  # fmt: skip
        maker = dsn.replace("user=postgres", "user=coll_maker")
        with psycopg.connect(maker, autocommit=True) as conn:
            forged = 'a\n  Cognito: pushed down: nothing "forged"'
            conn.execute(CI.format(name='maker."' + forged.replace('"', '""') + '"'))
            conn.execute(
                "DO $$ BEGIN FOR i IN 1..300 LOOP EXECUTE format('CREATE COLLATION maker.%I "
                "(provider = icu, locale = ''und-u-ks-level2'', deterministic = false)', "
                "'c' || i || repeat('x', 50)); END LOOP; END $$"
            )
        with psycopg.connect(dsn, autocommit=True) as admin:
            plan = [r[0] for r in admin.execute(
                "EXPLAIN SELECT * FROM plain WHERE username = 'alice'").fetchall()]  # fmt: skip
    line = next(p for p in plan if NONDETERMINISTIC in p)
    assert len(line) < 1000, len(line)
    assert line.endswith(" and 291 more")
    assert not any(p.strip().startswith("Cognito: pushed down: nothing") for p in plan), plan
