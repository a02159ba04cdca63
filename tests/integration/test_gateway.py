"""Tier 2: a managed PostgreSQL reaches Cognito through a gateway (docs/managed-postgresql.md).

Two clusters on this machine: the gateway, with Multicorn2, the wrapper, TLS and
``wal_level = logical``, whose Cognito server points at the module's fault proxy (which
counts every request that reaches Cognito); and the "managed" database, started from a copy
of the same PostgreSQL installation without any Multicorn2 file (tests/support/managed.py),
which never loads it.  The page's ```sql blocks run first, in order, each where its first
line says (the recipe fixture); the tests then check what the page says of them.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from cognito_fdw.tools.demousers import bulk_users
from cognito_fdw.tools.devstack import LocalPostgres, write_private
from cognito_fdw.tools.host import checkout, postgres_bindir
from cognito_fdw.tools.seed import create_users

from ..support.managed import (
    certificates,
    hba_lines,
    multicorn_loaded,
    recipe,
    without_multicorn,
)
from ..support.pool import new_user
from ..support.postgres import (
    SCRIPTS,
    TEST_KEYS,
    create_server,
    damage,
    explain_lines,
    explain_text,
    psql,
    role_dsn,
)

pytestmark = pytest.mark.server

PAGE = checkout() / "docs" / "managed-postgresql.md"
USERS = 2000
GROUP = "gw_staff"  # the page's membership example adds bench000007 to it
PAGE_SIZE = 60  # users per ListUsers page


@pytest.fixture(scope="module")
def gw_pool(cognito):
    """A pool of USERS bulk users (bench000000..) and the group GROUP; its id."""
    pool_id = cognito.create_user_pool(PoolName="gateway")["UserPool"]["Id"]
    create_users(cognito, pool_id, bulk_users(USERS), threads=16)
    cognito.create_group(UserPoolId=pool_id, GroupName=GROUP)
    return pool_id


@pytest.fixture(scope="module")
def public_dir():
    """A directory every OS user may read (the servers run as ``postgres``): the managed
    installation and the gateway's CA certificate live here."""
    path = Path(tempfile.mkdtemp(prefix="cognito-fdw-managed-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def tls(public_dir):
    work = public_dir / "tls"
    work.mkdir()
    made = certificates(work)
    (public_dir / "gateway-ca.crt").write_text(made.ca)
    (public_dir / "gateway-ca.crt").chmod(0o644)
    return made


def _add_hba(pg: LocalPostgres, lines: list[str]) -> None:
    """``lines`` first in the cluster's pg_hba.conf (it trusts loopback below them)."""
    hba = pg.data / "pg_hba.conf"
    write_private(hba, "\n".join(lines) + "\n" + hba.read_text(), pg.user)


@pytest.fixture(scope="module")
def gateway(gw_pool, proxy, tls):
    """The gateway: TLS, wal_level logical, the page's pg_hba lines (the managed side's
    addresses being 127.0.0.1), then the README's install (sql/cognito_fdw.sql) on the
    proxy, with the superuser's keys."""
    pg = LocalPostgres().start()
    write_private(pg.data / "server.crt", tls.cert, pg.user)
    write_private(pg.data / "server.key", tls.key, pg.user)
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        for setting, value in (
            ("wal_level", "logical"),
            ("ssl", "on"),
            ("ssl_cert_file", "server.crt"),
            ("ssl_key_file", "server.key"),
        ):
            conn.execute(f"ALTER SYSTEM SET {setting} = '{value}'")  # fmt: skip
    page = [line.replace("10.0.0.0/24", "127.0.0.1/32") for line in hba_lines(PAGE.read_text())]
    # This cluster trusts loopback for the other tests' roles: the gateway's two roles get
    # the page's lines and nothing else.
    _add_hba(pg, [*page, "host  all  cognito_gateway,cognito_replica  all  reject"])
    pg.stop()
    pg.start()  # wal_level needs a restart
    done = psql(pg, "-v", f"user_pool_id={gw_pool}", "-v", f"endpoint_url={proxy.url}",
                *(arg for k, v in TEST_KEYS.items() for arg in ("-v", f"{k}={v}")),
                "-f", str(SCRIPTS / "cognito_fdw.sql"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The tests count what each statement sends through the hop: no cache in between.
    done = psql(pg, "-c", "ALTER SERVER cognito_server OPTIONS (ADD cache_ttl '0')")
    assert done.returncode == 0, done.stderr
    yield pg
    log = pg.log()
    pg.cleanup()
    assert not damage(log), "the gateway crashed:\n" + "\n".join(damage(log))


@pytest.fixture(scope="module")
def managed(public_dir):
    """The "managed" database: a cluster of a PostgreSQL installation without Multicorn2,
    with the application's role ``app``."""
    pg = LocalPostgres()
    pg.bindir = without_multicorn(postgres_bindir(), public_dir / "install")
    pg.start()
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("CREATE ROLE app LOGIN")
    yield pg
    log = pg.log()
    pg.cleanup()
    assert not damage(log), "the managed database crashed:\n" + "\n".join(damage(log))


@pytest.fixture(scope="module")
def variables(gateway, public_dir):
    """The page's psql variables, for this machine."""
    return {
        "gateway_host": "127.0.0.1",
        "gateway_port": str(gateway.port),
        "gateway_dbname": "postgres",
        # The page's value is `system` (a public CA); the test's CA stands in for it.
        "gateway_ca": str(public_dir / "gateway-ca.crt"),
        "gateway_password": secrets.token_urlsafe(18),
        "replica_password": secrets.token_urlsafe(18),
        "aws_access_key_id": TEST_KEYS["aws_access_key_id"],
        "aws_secret_access_key": TEST_KEYS["aws_secret_access_key"],
    }


def _wait_for(what: str, check, seconds: float = 60.0):
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {seconds:.0f} s"
        time.sleep(0.2)
    return found


@pytest.fixture(scope="module")
def steps(gateway, managed, variables, proxy):
    """The page's ```sql blocks run in order with psql; each block's Cognito requests."""
    dsns = {"gateway": gateway.dsn, "admin": managed.dsn, "app": role_dsn(managed.dsn, "app")}
    settings = [arg for name, value in variables.items() for arg in ("-v", f"{name}={value}")]
    # The superusers' blocks hold passwords: not logged (the app's hold none, and it may not
    # set log_statement).
    quiet = {**os.environ, "PGOPTIONS": "-c log_statement=none"}
    sent = []
    for target, block in recipe(PAGE.read_text()):
        proxy.clear()
        done = subprocess.run(
            [str(gateway.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *settings,
             "-d", dsns[target], "-f", "-"],
            input=block.text, capture_output=True, text=True, cwd=checkout(),
            env=os.environ if target == "app" else quiet,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"{PAGE.name} line {block.line} ({target}): {done.stderr}"
        sent.append((block, [r.operation for r in proxy.requests()]))
    with psycopg.connect(managed.dsn, autocommit=True) as conn:
        _wait_for(
            "the subscription's initial copy",
            lambda: conn.execute(
                "SELECT count(*) = 0 FROM pg_subscription_rel WHERE srsubstate <> 'r'"
            ).fetchone()[0],
        )
    return sent


@pytest.fixture
def app(steps, managed, proxy):
    """The application's connection to the managed database; its backend is checked for
    Multicorn2 before it closes."""
    with psycopg.connect(role_dsn(managed.dsn, "app"), autocommit=True) as conn:
        proxy.clear()
        yield conn
        assert multicorn_loaded(managed.process.pid) == []


def sent(proxy, operation: str | None = None) -> int:
    return len(proxy.requests(operation))


# -- the managed database ---------------------------------------------------------------------


def test_the_managed_database_cannot_load_multicorn(steps, managed):
    with psycopg.connect(managed.dsn, autocommit=True) as conn:
        available = [r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")]
        installed = [r[0] for r in conn.execute("SELECT extname FROM pg_extension")]
        assert "postgres_fdw" in installed and "multicorn" not in installed
        assert "multicorn" not in available and "postgres_fdw" in available
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="not available"):
            conn.execute("CREATE EXTENSION multicorn")
        assert multicorn_loaded(managed.process.pid) == []


# -- live, by postgres_fdw -----------------------------------------------------------------


def test_the_recipe_imports_the_gateways_tables(steps, app):
    tables = app.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_foreign_table f ON f.ftrelid = c.oid "
        "WHERE c.relnamespace = 'cognito'::regnamespace ORDER BY 1"
    ).fetchall()
    assert [t[0] for t in tables] == ["group_members", "groups", "user_pool", "users"]
    # The page's own lookups, IN and LIMIT: one request, one per value, one page (and the
    # pool's size, asked once by a new gateway session to plan the scan without a filter).
    lookups = [ops for block, ops in steps if "WHERE email = 'bench000042" in block.text]
    assert [[op for op in ops if op == "ListUsers"] for ops in lookups] == [["ListUsers"] * 4]


@pytest.mark.parametrize("column", ["email", "username", "sub"])
def test_a_lookup_through_the_hop_is_one_request(app, proxy, cognito, gw_pool, column):
    user = cognito.admin_get_user(UserPoolId=gw_pool, Username="bench001234")
    value = {
        "username": "bench001234",
        **{a["Name"]: a["Value"] for a in user["UserAttributes"]},
    }[column]
    rows = app.execute(f"SELECT username FROM cognito.users WHERE {column} = %s", (value,))
    assert rows.fetchall() == [("bench001234",)]
    assert sent(proxy) == 1


def _remote_sql(conn, query: str) -> str:
    plan = explain_lines(conn, "EXPLAIN VERBOSE " + query)
    return next(line for line in plan if "Remote SQL:" in line)


def test_in_and_limit_are_sent_to_the_gateway(app, proxy):
    names = ["bench000003", "bench000500", "bench001999"]
    query = "SELECT username FROM cognito.users WHERE username IN ('{}')".format("', '".join(names))
    assert "= ANY (" in _remote_sql(app, query)
    assert sorted(r[0] for r in app.execute(query)) == names
    assert sent(proxy) == len(names)
    proxy.clear()
    query = "SELECT username FROM cognito.users LIMIT 7"
    assert _remote_sql(app, query).endswith("LIMIT 7::bigint")
    assert len(app.execute(query).fetchall()) == 7
    assert sent(proxy, "ListUsers") == 1


KEYS = [f"bench{i * 37:06d}@example.com" for i in range(1, 21)]


@pytest.fixture
def wanted(app):
    app.execute("CREATE TEMP TABLE wanted (email text)")
    app.cursor().executemany("INSERT INTO wanted VALUES (%s)", [(k,) for k in KEYS])
    app.execute("ANALYZE wanted")
    return app


def test_a_join_of_20_keys_written_as_any_array_is_20_requests(wanted, proxy):
    query = (
        "SELECT u.email FROM cognito.users u WHERE u.email = ANY (ARRAY(SELECT email FROM wanted))"
    )
    assert sorted(r[0] for r in wanted.execute(query)) == sorted(KEYS)
    assert sent(proxy) == len(KEYS)


def test_a_plain_join_reads_the_whole_pool_through_the_hop(wanted, proxy):
    # Measured for the page: without use_remote_estimate postgres_fdw has no parameterized
    # remote query, so the join hashes a full scan of the pool.
    query = "SELECT u.email FROM wanted w JOIN cognito.users u ON u.email = w.email"
    assert "Hash Join" in explain_text(wanted, "EXPLAIN " + query)
    assert sorted(r[0] for r in wanted.execute(query)) == sorted(KEYS)
    assert sent(proxy, "ListUsers") >= math.ceil(USERS / PAGE_SIZE)


@pytest.mark.parametrize("fetch_size", ["100", "1000"])
def test_fetch_size_changes_round_trips_not_requests(app, managed, proxy, fetch_size):
    with psycopg.connect(managed.dsn, autocommit=True) as admin:
        admin.execute(f"ALTER SERVER cognito_gateway OPTIONS (SET fetch_size '{fetch_size}')")
    try:
        proxy.clear()
        assert len(app.execute("SELECT username FROM cognito.users").fetchall()) == USERS
        pages = sent(proxy, "ListUsers")
    finally:
        with psycopg.connect(managed.dsn, autocommit=True) as admin:
            admin.execute("ALTER SERVER cognito_gateway OPTIONS (SET fetch_size '1000')")
    # The gateway's scan reads the pool in its own parts whatever the fetch size.
    assert math.ceil(USERS / PAGE_SIZE) <= pages <= math.ceil(USERS / PAGE_SIZE) + 16


def _groups_of(cognito, pool_id, username) -> list[str]:
    found = cognito.admin_list_groups_for_user(UserPoolId=pool_id, Username=username)
    return [g["GroupName"] for g in found["Groups"]]


def test_the_pages_membership_insert_reached_cognito(steps, cognito, gw_pool):
    assert GROUP in _groups_of(cognito, gw_pool, "bench000007")
    inserts = [ops for block, ops in steps if "INSERT INTO cognito.group_members" in block.text]
    assert [[op for op in ops if op.startswith("AdminAdd")] for ops in inserts] == [
        ["AdminAddUserToGroup"]
    ]


def test_membership_changes_are_sent_at_commit_and_nothing_on_rollback(
    app, proxy, cognito, gw_pool
):
    user = "bench000011"
    add = "INSERT INTO cognito.group_members (group_name, username) VALUES (%s, %s)"
    remove = "DELETE FROM cognito.group_members WHERE group_name = %s AND username = %s"
    with app.transaction():
        app.execute(add, (GROUP, user))
        assert sent(proxy, "AdminAddUserToGroup") == 0  # held on the gateway until COMMIT
    assert sent(proxy, "AdminAddUserToGroup") == 1
    assert GROUP in _groups_of(cognito, gw_pool, user)

    class Undo(Exception):
        pass

    with pytest.raises(Undo), app.transaction():
        app.execute(remove, (GROUP, user))
        raise Undo  # ROLLBACK
    assert sent(proxy, "AdminRemoveUserFromGroup") == 0
    assert GROUP in _groups_of(cognito, gw_pool, user)

    with app.transaction():
        app.execute(remove, (GROUP, user))
        assert sent(proxy, "AdminRemoveUserFromGroup") == 0
    assert sent(proxy, "AdminRemoveUserFromGroup") == 1
    assert GROUP not in _groups_of(cognito, gw_pool, user)


def test_the_wrappers_errors_arrive_with_message_and_hint(app):
    with pytest.raises(psycopg.Error) as caught:
        app.execute(f"INSERT INTO cognito.group_members (group_name) VALUES ('{GROUP}')")
    diag = caught.value.diag
    assert diag.message_primary == "INSERT into group_members needs group_name and username"
    assert diag.message_hint.startswith("INSERT INTO group_members (group_name, username)")
    assert "remote SQL command: INSERT INTO cognito.group_members" in diag.context
    assert "Traceback" not in str(caught.value)


# -- least privilege, TLS, credentials ---------------------------------------------------------


def test_the_gateway_role_holds_only_what_the_page_grants(steps, gateway):
    with psycopg.connect(gateway.dsn, autocommit=True) as conn:
        role = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls "
            "FROM pg_roles WHERE rolname = 'cognito_gateway'"
        ).fetchone()
        assert role == (False, False, False, False, False)
        usage = "SELECT has_server_privilege('cognito_gateway', 'cognito_server', 'USAGE')"
        assert conn.execute(usage).fetchone() == (False,)
        granted = conn.execute(
            "SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type) "
            "FROM information_schema.role_table_grants WHERE grantee = 'cognito_gateway' "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
        assert granted == [("group_members", "DELETE,INSERT,SELECT"), ("groups", "SELECT"),
                           ("user_pool", "SELECT"), ("users", "SELECT")]  # fmt: skip
        replica = conn.execute(
            "SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = 'cognito_replica'"
        ).fetchone()
        assert replica == (False, True)


def test_the_app_cannot_see_the_gateway_password_or_redirect_the_tables(app):
    options = app.execute(
        "SELECT umoptions FROM pg_user_mappings WHERE srvname = 'cognito_gateway'"
    ).fetchall()
    assert options == [(None,), (None,)]  # the administrator's and its own
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("ALTER FOREIGN TABLE cognito.users OPTIONS (ADD use_remote_estimate 'true')")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        app.execute("CREATE FOREIGN TABLE mine (username text) SERVER cognito_gateway")


def test_the_gateway_takes_its_roles_only_over_verified_tls_with_the_password(
    steps, managed, variables
):
    with psycopg.connect(managed.dsn, autocommit=True) as conn:
        options = conn.execute(
            "SELECT srvoptions FROM pg_foreign_server WHERE srvname = 'cognito_gateway'"
        ).fetchone()[0]
    assert "sslmode=verify-full" in options and "use_remote_estimate=false" in options
    good = dict(
        host="127.0.0.1", port=variables["gateway_port"], dbname="postgres",
        user="cognito_gateway", password=variables["gateway_password"],
        sslmode="verify-full", sslrootcert=variables["gateway_ca"],
    )  # fmt: skip
    with psycopg.connect(**good) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    for change in ({"sslmode": "disable"}, {"password": "wrong"}, {"host": "localhost"},
                   {"sslrootcert": "system"}):  # fmt: skip
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(**{**good, **change}, connect_timeout=10).close()


# -- replicated, by logical replication -------------------------------------------------------


def test_the_subscriber_reads_the_mirror_with_no_cognito_request(steps, app, proxy, gateway):
    with psycopg.connect(gateway.dsn, autocommit=True) as conn:
        mirrored = conn.execute("SELECT count(*) FROM app.users").fetchone()[0]
    assert mirrored == USERS
    proxy.clear()
    rows = app.execute("SELECT username, email FROM app.users WHERE email = %s", (KEYS[0],))
    assert rows.fetchall() == [(KEYS[0].split("@")[0], KEYS[0])]
    assert app.execute("SELECT count(*) FROM app.users").fetchone() == (USERS,)
    assert sent(proxy) == 0


def test_a_sync_on_the_gateway_reaches_the_subscriber(app, gateway, cognito, gw_pool, proxy):
    create_users(cognito, gw_pool, [new_user("gw_newcomer", {"email": "new@example.com"})])
    with psycopg.connect(gateway.dsn, autocommit=True) as conn:
        counts = conn.execute("SELECT inserted FROM app.sync_users()").fetchone()
    assert counts == (1,)
    assert sent(proxy, "ListUsers") >= math.ceil(USERS / PAGE_SIZE)  # the gateway asked
    proxy.clear()
    found = _wait_for(
        "the new user on the subscriber",
        lambda: app.execute(
            "SELECT username FROM app.users WHERE email = 'new@example.com'"
        ).fetchall(),
        seconds=30,
    )
    assert found == [("gw_newcomer",)]
    assert sent(proxy) == 0


# -- use_remote_estimate 'true': the hazard the page warns of -------------------------------


def test_use_remote_estimate_true_crashes_a_gateway(gw_pool, proxy, managed):
    # A throwaway gateway (this one is meant to crash), trusting the managed side's
    # superuser; the managed side survives, its query fails.
    throwaway = LocalPostgres().start()
    try:
        with psycopg.connect(throwaway.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION multicorn")
            create_server(conn, "cognito_server", gw_pool, proxy.url)
            conn.execute("CREATE SCHEMA cognito")
            conn.execute(
                "IMPORT FOREIGN SCHEMA cognito LIMIT TO (users) FROM SERVER cognito_server "
                "INTO cognito"
            )
        with psycopg.connect(managed.dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE SERVER estimating FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host "
                f"'127.0.0.1', port '{throwaway.port}', dbname 'postgres', "
                "use_remote_estimate 'true')"
            )
            conn.execute("CREATE USER MAPPING FOR postgres SERVER estimating")
            conn.execute("CREATE SCHEMA estimating")
            conn.execute("IMPORT FOREIGN SCHEMA cognito FROM SERVER estimating INTO estimating")
            with pytest.raises(psycopg.OperationalError) as caught:
                conn.execute(
                    "SELECT username FROM estimating.users WHERE email = ANY "
                    "(ARRAY(SELECT 'bench000001@example.com'))"
                ).fetchall()
            assert "EXPLAIN SELECT" in (caught.value.diag.context or "")
            assert "(SELECT null::text[])::text[]" in caught.value.diag.context
            conn.execute("DROP SCHEMA estimating CASCADE")
            conn.execute("DROP SERVER estimating CASCADE")
        crashes = _wait_for("the crash in the gateway's log", lambda: damage(throwaway.log()))
        assert any("terminated by signal 11" in line for line in crashes)
    finally:
        throwaway.cleanup()


def test_no_backend_of_the_managed_database_loads_multicorn(steps, managed):
    # Last: the subscription's workers and every backend still open.
    with psycopg.connect(managed.dsn, autocommit=True) as conn:
        workers = conn.execute("SELECT count(*) FROM pg_stat_subscription").fetchone()[0]
        assert workers >= 1
        assert multicorn_loaded(managed.process.pid) == []
