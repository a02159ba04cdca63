"""Tier 2: every statement shape reported at Multicorn's boundary (docs/multicorn.md H12: a
non-constant condition value is converted with a wrong type), in a throwaway cluster of its own.

Multicorn2 3.2 converts each scan condition's value in C before any wrapper code runs
(docs/multicorn.md H1: EXPLAIN of a by-reference parameter crashes; H12: a non-constant value
is converted with a wrong type; H13: no BeginForeignInsert, so COPY FROM crashes).  Each shape
here, run by the role that can run it, must give the right answer (the local copy's) or a clear
error, with no backend crash: the sessions open beside it survive and the server log shows no
signal.  A shape that still
crashes the server, where neither the wrapper nor its SQL can act first, is marked known
(a strict xfail naming its SECURITY.md entry, so that it is counted, and a Multicorn that
stops crashing fails the mark); the cluster recovers and the next shape runs.
"""

from __future__ import annotations

import asyncio
import re

import asyncpg
import psycopg
import pytest

from cognito_fdw.tools.devstack import LocalPostgres
from cognito_fdw.tools.seed import create_users

from ..support.pool import new_user
from ..support.postgres import (
    SCRIPTS,
    TEST_KEYS,
    create_server,
    damage,
    explain_text,
    install_readme_setup,
    literal,
    psql,
    role_dsn,
    wait_ready,
)

READER = "reader"  # SELECT on the cognito tables, TEMP, nothing else
WRITER = "writer"  # INSERT granted on the cognito tables too


class KnownHazard(AssertionError):
    """What a known shape still does: see :func:`known`."""


class Crashed(KnownHazard):
    """A backend died: every session of the cluster was ended."""

    seen = 0  # how many a test body raised (the watch then does not raise it again)

    def __init__(self, *args):
        super().__init__(*args)
        Crashed.seen += 1


@pytest.fixture(scope="module")
def boundary(moto, pool):
    pg = LocalPostgres().start()
    install_readme_setup(pg, user_pool_id=pool.pool_id, endpoint_url=moto.url, **TEST_KEYS)
    pg.endpoint = moto.url
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS citext")
        conn.execute("CREATE SCHEMA imported")
        conn.execute(
            "IMPORT FOREIGN SCHEMA cognito FROM SERVER cognito_server INTO imported "
            "OPTIONS (writable 'true')"
        )
        conn.execute("CREATE TABLE local_users AS SELECT * FROM imported.users")
        conn.execute("CREATE TABLE app_users (id int, email citext, user_sub uuid)")
        conn.execute(
            "INSERT INTO app_users SELECT row_number() OVER (ORDER BY username), email::citext, "
            "sub::uuid FROM local_users WHERE username IN ('user001', 'user002', 'user003')"
        )
        conn.execute("ANALYZE app_users")
        conn.execute("ANALYZE local_users")
        for role in (READER, WRITER):
            conn.execute(f"CREATE ROLE {role} LOGIN")
            conn.execute(f"GRANT USAGE ON SCHEMA imported, cognito TO {role}")
            conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA imported, cognito TO {role}")
            conn.execute(f"GRANT SELECT ON local_users, app_users TO {role}")
            conn.execute(f"GRANT USAGE ON FOREIGN SERVER cognito_server TO {role}")
            conn.execute(
                f"CREATE USER MAPPING FOR {role} SERVER cognito_server OPTIONS "
                "(aws_access_key_id 'AKIDTESTING', aws_secret_access_key 'testing-secret')"
            )
        conn.execute(f"GRANT INSERT ON ALL TABLES IN SCHEMA imported, cognito TO {WRITER}")
        pg.started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    yield pg
    pg.cleanup()


@pytest.fixture
def watch(boundary):
    """Fails the test if any backend died during it without its body saying so."""
    wait_ready(boundary)
    before, raised = len(damage(boundary.log())), Crashed.seen
    sentinel = psycopg.connect(boundary.dsn, autocommit=True)
    yield boundary
    alive = True
    try:
        sentinel.execute("SELECT 1")
    except psycopg.OperationalError:
        alive = False
    finally:
        sentinel.close()
    crashes = damage(boundary.log())[before:]
    if crashes or not alive:
        wait_ready(boundary)
        if Crashed.seen == raised:
            pytest.fail("a backend crashed: " + ("\n".join(crashes) or "the sentinel died"))


def session(pg, role: str | None = None, **kwargs):
    dsn = pg.dsn if role is None else role_dsn(pg.dsn, role)
    return psycopg.connect(dsn, autocommit=True, **kwargs)


def answer(conn, sql: str, params=None):
    """The sorted rows, or ('error', message): the statement's outcome, crash aside."""
    try:
        return sorted(conn.execute(sql, params).fetchall())
    except psycopg.OperationalError:
        raise
    except psycopg.Error as exc:
        return ("error", exc.diag.message_primary)


def outcome(pg, role, statements: list[str], sql: str, params=None):
    """Run ``statements`` then ``sql`` in one session of ``role``; Crashed if it died."""
    try:
        with session(pg, role) as conn:
            for statement in statements:
                conn.execute(statement)
            return answer(conn, sql, params)
    except psycopg.OperationalError as exc:
        raise Crashed(str(exc)) from None


def same_as_local(pg, role, statements, sql, params=None):
    foreign = outcome(pg, role, statements, sql.format(u="imported.users"), params)
    local = outcome(pg, role, statements, sql.format(u="local_users"), params)
    assert foreign == local, sql
    assert foreign and foreign[0] != "error", foreign
    return foreign


def known(entry: str):
    """A shape the wrapper cannot stop (it crashes the server, or leaks): counted as an
    expected failure naming its SECURITY.md entry; strict, so a fix fails the mark."""
    return pytest.mark.xfail(raises=KnownHazard, strict=True, reason=f"SECURITY.md: {entry}")


# -- 1. a condition whose value is a function call (FuncExpr: no paramtype) --------------


@known("A function call compared with a column")
def test_1_a_function_of_the_wrong_type_against_jsonb(watch):
    outcome(
        watch, READER, ["SET my.x = 'AAA '"],
        "SELECT count(*) FROM imported.users u WHERE u.attributes ? current_setting('my.x')",
    )  # fmt: skip


@known("A function call compared with a column")
def test_1_a_temporary_operator_with_a_function_of_another_type(watch):
    outcome(
        watch, READER,
        ["CREATE FUNCTION pg_temp.teq(text, int) RETURNS bool LANGUAGE plpgsql "
         "AS 'BEGIN RETURN $1 = $2::text; END'",
         "CREATE OPERATOR pg_temp.=== (leftarg = text, rightarg = int, "
         "function = pg_temp.teq)"],
        "SELECT count(*) FROM imported.users u "
        "WHERE u.username OPERATOR(pg_temp.===) abs(pg_backend_pid())",
    )  # fmt: skip


def test_1_the_safe_form_is_a_sub_select(watch):
    setup = ["SET my.x = 'AAA '", "SET my.y = 'user007'"]
    assert same_as_local(
        watch, READER, setup,
        "SELECT count(*) FROM {u} u WHERE u.attributes ? (SELECT current_setting('my.x'))",
    ) == [(0,)]  # fmt: skip
    assert same_as_local(
        watch, READER, setup,
        "SELECT username FROM {u} u WHERE u.username = (SELECT current_setting('my.y'))",
    ) == [("user007",)]  # fmt: skip
    # A text function on a text column is converted as text: right too.
    same_as_local(
        watch, READER, setup,
        "SELECT username FROM {u} u WHERE u.username = current_setting('my.y')",
    )  # fmt: skip


# -- 2. COPY FROM: Multicorn's insert without its state (docs/multicorn.md H13: no
# BeginForeignInsert, so COPY FROM crashes) -----------------------------


@pytest.mark.parametrize("table", ["imported.group_members", "imported.users", "cognito.users"])
def test_2_copy_from_is_refused_before_multicorn_inserts(watch, table):
    with session(watch, WRITER) as conn:
        with pytest.raises(psycopg.Error) as caught:  # noqa: SIM117 - the error is the COPY's
            with conn.cursor().copy(f"COPY {table} (username) FROM STDIN") as copy:
                copy.write_row(("user001",))
        assert "COPY FROM into foreign table" in caught.value.diag.message_primary


# -- 3. EXPLAIN of a join whose outer key is a by-reference type other than text (docs/multicorn.md
# H1: EXPLAIN of a by-reference parameter crashes) ------


@known("EXPLAIN of a join on a citext or name key")
def test_3_explain_of_a_join_on_a_citext_key(watch):
    outcome(
        watch, READER, [],
        "EXPLAIN SELECT a.id, u.username FROM app_users a JOIN imported.users u "
        "ON u.email = a.email",
    )  # fmt: skip


@known("EXPLAIN of a join on a citext or name key")
def test_3_explain_of_a_join_on_pg_roles(watch):
    outcome(
        watch, READER, [],
        "EXPLAIN SELECT r.rolname, u.email FROM pg_roles r JOIN imported.users u "
        "ON u.username = r.rolname",
    )  # fmt: skip


def test_3_the_select_itself_is_right_and_a_text_key_is_safe_under_explain(watch):
    same_as_local(
        watch, READER, [],
        "SELECT a.id, u.username FROM app_users a JOIN {u} u ON u.email = a.email",
    )  # fmt: skip
    safe = (
        "WITH k AS MATERIALIZED (SELECT id, email::text AS email FROM app_users) "
        "SELECT k.id, u.username FROM k JOIN {u} u ON u.email = k.email"
    )
    assert len(same_as_local(watch, READER, [], safe)) == 3
    for options in ("", "(ANALYZE)", "(ANALYZE, VERBOSE, FORMAT JSON)"):
        plan = outcome(watch, READER, [], f"EXPLAIN {options} " + safe.format(u="imported.users"))
        assert plan[0] != "error" and "ListUsers Filter: email" in str(plan)


# -- 4, 5. A generic plan's by-reference parameter under EXPLAIN (docs/multicorn.md H1: EXPLAIN of a
# by-reference parameter crashes) ----------------------

AUTO_EXPLAIN = ["LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0"]


@known("auto_explain with a generic plan's array parameter")
def test_4_auto_explain_of_a_drivers_prepared_any(watch):
    with session(watch, prepare_threshold=0) as conn:
        for statement in AUTO_EXPLAIN:
            conn.execute(statement)
        try:
            for _ in range(7):
                conn.execute(
                    "SELECT username FROM imported.users WHERE username = ANY(%s) LIMIT 10",
                    [["user001", "user002"]],
                )
        except psycopg.OperationalError as exc:
            raise Crashed(str(exc)) from None


def test_4_auto_explain_of_a_prepared_in_sub_select_is_right(watch):
    with session(watch, prepare_threshold=0) as conn:
        for statement in AUTO_EXPLAIN:
            conn.execute(statement)
        sql = (
            "SELECT username FROM {u} WHERE username IN (SELECT unnest(%s::text[])) "
            "ORDER BY 1 LIMIT 10"
        )
        for _ in range(7):
            rows = conn.execute(sql.format(u="imported.users"), [["user001", "user002"]])
            assert rows.fetchall() == [("user001",), ("user002",)]


@known("EXPLAIN EXECUTE of a generic plan with a jsonb, numeric, uuid or array parameter")
def test_5_explain_execute_of_a_generic_jsonb_parameter(watch):
    outcome(
        watch, READER,
        ["SET plan_cache_mode = force_generic_plan",
         "PREPARE p(jsonb) AS SELECT username FROM imported.users WHERE attributes = $1"],
        "EXPLAIN EXECUTE p(NULL)",
    )  # fmt: skip


# -- 6, 7. Values Multicorn converts with a wrong type: never "no user can match" (docs/multicorn.md
# H12: a non-constant value is converted with a wrong type) ----


@pytest.mark.parametrize("mode", ["auto", "force_generic_plan", "force_custom_plan"])
def test_6_a_drivers_prepared_in_list_returns_the_same_rows_every_time(watch, mode):
    names = ["user001", "user050", "user099", "nobody", "user150"]
    sql = "SELECT username FROM {u} WHERE username IN (%s, %s, %s, %s, %s) ORDER BY 1"
    expected = [("user001",), ("user050",), ("user099",), ("user150",)]
    with session(watch, READER, prepare_threshold=0) as conn:
        conn.execute(f"SET plan_cache_mode = {mode}")
        for _ in range(8):
            assert conn.execute(sql.format(u="imported.users"), names).fetchall() == expected


@pytest.mark.parametrize(
    "condition",
    [
        "username IN ('user001', current_setting('application_name'))",
        "username = ANY(string_to_array(current_setting('my.list'), ','))",
        "username IN (SELECT unnest(string_to_array(current_setting('my.list'), ',')))",
        "email = ANY(ARRAY[lower(current_setting('my.email'))])",
    ],
)
def test_6_a_list_holding_anything_but_constants_is_right(watch, condition):
    setup = ["SET application_name = 'user002'", "SET my.list = 'user003,user004'",
             "SET my.email = 'USER005@EXAMPLE.COM'"]  # fmt: skip
    assert same_as_local(watch, READER, setup, f"SELECT username FROM {{u}} WHERE {condition}")


def test_7_a_cast_in_a_join_is_right_or_a_clear_error(watch):
    for sql in (
        "SELECT a.id, u.username FROM app_users a JOIN {u} u ON u.sub = a.user_sub::text",
        "SELECT a.id, u.username FROM app_users a JOIN {u} u ON u.email = a.email::text",
    ):
        foreign = outcome(watch, READER, [], sql.format(u="imported.users"))
        local = outcome(watch, READER, [], sql.format(u="local_users"))
        assert foreign == local or (
            foreign[0] == "error" and "lookup failed for type" in foreign[1]
        ), (sql, foreign)


def test_7_a_cast_parameter_of_a_generic_plan_is_right(watch):
    with session(watch, READER) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        sub = conn.execute("SELECT sub FROM local_users WHERE username = 'user009'").fetchone()[0]
        for _ in range(3):
            rows = conn.execute("SELECT username FROM imported.users WHERE sub = %s::text", [sub])
            assert rows.fetchall() == [("user009",)]


# -- 8. another session's temporary collation ---------------------------------------------


def test_8_another_sessions_temporary_collation_keeps_pushdown_on(watch):
    with session(watch, READER) as other, session(watch, READER) as conn:
        other.execute(
            "CREATE COLLATION pg_temp.ci (provider = icu, locale = 'und-u-ks-level2', "
            "deterministic = false)"
        )
        plan = answer(conn, "EXPLAIN SELECT * FROM imported.users WHERE username = 'user001'")
        assert 'ListUsers Filter: username = "user001"' in str(plan)


# -- 9. memory over many rescans ------------------------------------------------------------


def rss_kb(conn) -> int:
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


LATERAL = (
    "SELECT count(*) FROM generate_series(1, {n}) g, LATERAL (SELECT 1 FROM imported.users u "
    "WHERE u.username = 'user00' || (g % 2 + 1) LIMIT 1) x"
)


def test_9_the_wrappers_cost_of_many_rescans_is_bounded(watch):
    # EXPLAIN ANALYZE counts every rescan in one sum: the request count is what was sent.
    with session(watch, READER) as conn:
        plan = explain_text(conn, "EXPLAIN ANALYZE " + LATERAL.format(n=3000))
        assert "Cognito actual: 2 requests (ListUsers 2) in 3000 scans" in plan


def peak_rss_kb(conn) -> int:
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))


def test_9_a_statements_memory_stays_bounded_whatever_the_rescans(watch):
    # Under JIT (a statement of 6,000 outer rows costs above jit_above_cost) Multicorn
    # compiles its conditions again at every rescan and keeps each until the statement ends
    # (docs/multicorn.md H14: C allocates per rescan until the statement ends): about 13 kB a
    # rescan.  The wrapper stops the statement at max_scans_per_statement scans of a table,
    # so 15,000 outer rows cost what 6,000 do: what 1,000 rescans keep.
    with session(watch) as conn:
        conn.execute(
            "CREATE FOREIGN TABLE IF NOT EXISTS imported.capped_users (username text) "
            "SERVER cognito_server OPTIONS (object 'users', max_scans_per_statement '1000')"
        )
        conn.execute(f"GRANT SELECT ON imported.capped_users TO {READER}")
    lateral = LATERAL.replace("imported.users", "imported.capped_users")
    grown = {}
    for n in (6000, 15000):
        with session(watch, READER) as conn:
            conn.execute("SELECT 1 FROM imported.capped_users LIMIT 1")
            before = peak_rss_kb(conn)
            with pytest.raises(psycopg.Error) as stopped:
                conn.execute(lateral.format(n=n))
            grown[n] = peak_rss_kb(conn) - before
            assert conn.execute("SELECT 1").fetchone() == (1,)
        diag = stopped.value.diag
        assert diag.message_primary == (
            "cognito_fdw: the statement scanned imported.capped_users more than "
            "max_scans_per_statement (1,000) allows and was stopped"
        )
        assert "WITH ... AS MATERIALIZED" in diag.message_hint
    # 9,000 more rescans would have kept about 117 MB more.
    assert grown[15000] < grown[6000] + 20000, grown


# -- sql/sync.sql and the README's statements under EXPLAIN and auto_explain ----------------


def test_sync_sqls_statements_are_safe_under_auto_explain_of_nested_statements(
    watch, pool, cognito
):
    # Its arrays are literals, its keys text: nothing by-reference reaches Multicorn as a parameter
    # (docs/multicorn.md H1: EXPLAIN of a by-reference parameter crashes), whatever auto_explain
    # explains, also once PL/pgSQL's plans are generic.
    loaded = psql(watch, "-v", "cognito_schema=imported", "-f", str(SCRIPTS / "sync.sql"))
    assert loaded.returncode == 0, loaded.stderr
    group = "boundary_role"
    cognito.create_group(UserPoolId=pool.pool_id, GroupName=group)
    cognito.admin_add_user_to_group(UserPoolId=pool.pool_id, GroupName=group, Username="user001")
    with session(watch) as conn:
        for statement in [*AUTO_EXPLAIN, "SET auto_explain.log_nested_statements = on",
                          "SET auto_explain.log_analyze = on"]:  # fmt: skip
            conn.execute(statement)
        conn.execute("SELECT app.sync_users()")
        conn.execute("INSERT INTO app.roles (name) VALUES (%s)", [group])
        for _ in range(7):  # past PL/pgSQL's five custom plans
            drift = conn.execute("SELECT * FROM app.reconcile_roles(repair => false)")
            assert drift.fetchall() == [("remove", group, "user001")]
        assert conn.execute("SELECT * FROM app.reconcile_roles()").fetchall()
        assert conn.execute("SELECT * FROM app.reconcile_roles()").fetchall() == []
        sub = conn.execute("SELECT sub FROM app.users LIMIT 1").fetchone()[0]
        for _ in range(7):
            assert conn.execute("SELECT username FROM app.user_for_sub(%s)", [sub]).fetchone()
        conn.execute("CALL app.sync_users_in_parts(2)")


# -- 10. a value PostgreSQL text cannot hold --------------------------------------------------


def test_10_a_nul_from_cognito_fails_no_query(watch, cognito):
    pool_id = cognito.create_user_pool(PoolName="boundary-nul")["UserPool"]["Id"]
    create_users(cognito, pool_id, [new_user("nul", {"name": "a\x01b\x7fc\x00d"})])
    with session(watch) as conn:
        create_server(conn, "nul_server", pool_id, watch.endpoint)
        conn.execute(
            "CREATE FOREIGN TABLE imported.nul_users (username text, name text, attributes "
            "jsonb) SERVER nul_server OPTIONS (object 'users')"
        )
        assert conn.execute("SELECT count(*) FROM imported.nul_users").fetchone() == (1,)
        assert conn.execute("SELECT name FROM imported.nul_users").fetchone() == (
            "a\x01b\x7fc\ufffdd",
        )


# -- 11. EXPLAIN in every format; what a generic plan sends -----------------------------------


@pytest.mark.parametrize("fmt", ["JSON", "YAML", "XML"])
def test_11_every_explain_format_keeps_every_wrapper_line(watch, fmt):
    sql = "SELECT * FROM imported.users WHERE username = 'user001' AND given_name LIKE '%x'"
    with session(watch, READER) as conn:
        out = str(conn.execute(f"EXPLAIN (ANALYZE, FORMAT {fmt}) {sql}").fetchone()[0])
    for line in ("ListUsers Filter: username", "pushed down: username", "left to PostgreSQL: "
                 "given_name LIKE", "requests/s", "Cognito actual: 1 request"):  # fmt: skip
        assert line in out, (fmt, line)


@pytest.mark.parametrize(
    "key, where", [("sub", "email"), ("username", "email"), ("username", "sub")]
)
def test_11_a_generic_join_filtered_by_a_parameter_asks_once_not_per_outer_row(watch, key, where):
    with session(watch, READER) as conn:
        conn.execute(
            f"CREATE TEMP TABLE orders AS SELECT {key} AS user_key FROM local_users "
            f"WHERE {key} IS NOT NULL"
        )
        conn.execute("ANALYZE orders")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        # A nested loop, the users table scanned once per order with the order's key.
        conn.execute("SET enable_hashjoin = off")
        conn.execute("SET enable_mergejoin = off")
        sql = f"SELECT o.user_key FROM orders o JOIN {{u}} u ON u.{key} = o.user_key "
        sql += f"WHERE u.{where} = %s"
        value = conn.execute(
            f"SELECT {where} FROM local_users WHERE {key} IS NOT NULL AND {where} IS NOT NULL "
            "ORDER BY username LIMIT 1"
        ).fetchone()[0]
        local = conn.execute(sql.format(u="local_users"), [value]).fetchall()
        assert local
        conn.execute(f"PREPARE j(text) AS {sql.format(u='imported.users')}" % "$1")
        execute = f"EXECUTE j({literal(value)})"
        assert conn.execute(execute).fetchall() == local
        plan = explain_text(conn, "EXPLAIN ANALYZE " + execute)
        # The join's key comes after the table's own conditions (docs/multicorn.md M16:
        # a parameterized scan's join keys come last), so the first scan already looks
        # the parameter up; its cached answer serves every other outer row.
        requests = int(re.search(r"Cognito actual: (\d+) requests? ", plan).group(1))
        outer = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
        assert f"in {outer} scans" in plan and requests == 1, plan


# -- asyncpg: named prepared statements, binary parameters, PostgreSQL's generic plan ---------


@pytest.mark.parametrize(
    "sql, args",
    [
        ("SELECT username FROM {u} WHERE username IN ($1, $2, $3, $4, $5) ORDER BY 1",
         ["user001", "user050", "user099", "nobody", "user150"]),
        ("SELECT username FROM {u} WHERE username = ANY($1) ORDER BY 1 LIMIT 10",
         [["user001", "user002", "nobody"]]),
        ("SELECT username FROM {u} WHERE email = $1 ORDER BY 1", ["user003@example.com"]),
        ("SELECT count(*) FROM {u} WHERE enabled = $1", [True]),
    ],
)  # fmt: skip
def test_asyncpg_returns_the_same_rows_on_every_execution(watch, sql, args):
    # The sixth execution (PostgreSQL's generic plan) returned no rows.
    async def run():
        conn = await asyncpg.connect(role_dsn_url(watch, READER))
        try:
            foreign = await conn.prepare(sql.format(u="imported.users"))
            local = await conn.prepare(sql.format(u="local_users"))
            expected = [tuple(r) for r in await local.fetch(*args)]
            return expected, [[tuple(r) for r in await foreign.fetch(*args)] for _ in range(8)]
        finally:
            await conn.close()

    expected, answers = asyncio.run(run())
    assert answers == [expected] * 8


def role_dsn_url(pg, role: str) -> str:
    return f"postgresql://{role}@127.0.0.1:{pg.port}/postgres"
