"""``cognito-fdw doctor`` against a real PostgreSQL with Multicorn2 and moto: a healthy
install, and the broken ones it must catch (each printed with its fix, exit status 1)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import botocore
import psycopg
import pytest

from cognito_fdw.tools import cli
from cognito_fdw.tools.devstack import LocalPostgres, free_port
from cognito_fdw.tools.host import multicorn_missing, postgres_bindir

from ...support.managed import without_multicorn
from ...support.pool import POOL_REGION
from ...support.postgres import SCRIPTS, create_server, literal
from ...support.reliability import record


def doctor(capsys, dsn: str) -> tuple[int, str]:
    status = cli.main(["doctor", dsn, "--timeout", "20"])
    return status, capsys.readouterr().out


@dataclass
class Database:
    dsn: str
    conn: psycopg.Connection
    endpoint: str


@pytest.fixture
def database(setup):
    """A database of its own in the tier-2 cluster, so doctor sees only this test's servers."""
    name = f"doctor_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    dsn = f"host=127.0.0.1 port={setup.port} user=postgres dbname={name}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield Database(dsn, conn, setup.endpoint)
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def make_server(conn, name, pool_id, endpoint, keys=True, table=True, guard=True):
    conn.execute("CREATE EXTENSION IF NOT EXISTS multicorn")
    if guard:
        conn.execute((SCRIPTS / "guard.sql").read_text())
    create_server(conn, name, pool_id, endpoint, keys=keys, region=POOL_REGION)
    if table:
        conn.execute(
            f"CREATE FOREIGN TABLE {name}_users (username text, email text, enabled boolean) "
            f"SERVER {name} OPTIONS (object 'users')"
        )


def test_a_healthy_install_passes_and_shows_versions_and_latency(database, pool, capsys):
    make_server(database.conn, "good", pool.pool_id, database.endpoint)

    status, out = doctor(capsys, database.dsn)

    assert status == 0, out
    assert "ok    multicorn: extension 3.2" in out
    assert "ok    wrapper: the server's Python imports cognito_fdw.CognitoFdw" in out
    assert "ok    table public.good_users: 1 row(s) in 1 request(s)" in out
    # The server's own versions, its Python asked through the wrapper (no PL/Python here).
    server = database.conn.execute("SHOW server_version").fetchone()[0]
    python = _embedded_python()
    assert (
        f"ok    versions: PostgreSQL {server}, Multicorn2 3.2, Python {python}, "
        f"cognito_fdw 0.1.0, botocore {botocore.__version__}\n"
    ) in out
    assert "pl/python" not in out and "service:" not in out
    assert "request latency: median" in out
    assert "testing-secret" not in out
    assert out.endswith("no problems found\n")


def _embedded_python() -> str:
    """The version of the libpython multicorn.so is linked with (its Py_GetVersion, which
    needs no interpreter), asked in a process of its own."""
    found = subprocess.run(
        ["ldd", str(Path(postgres_bindir()).parent / "lib" / "multicorn.so")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    library = re.search(r"libpython3\.\d+\.so\S* => (\S+)", found).group(1)
    code = (
        "import ctypes, sys; get = ctypes.CDLL(sys.argv[1]).Py_GetVersion; "
        "get.restype = ctypes.c_char_p; print(get().decode().split()[0])"
    )
    asked = subprocess.run(
        [sys.executable, "-c", code, library], capture_output=True, text=True, check=True
    )
    return asked.stdout.strip()


def test_plpython_in_the_database_is_named_with_what_it_means(database, pool, capsys):
    make_server(database.conn, "good", pool.pool_id, database.endpoint)
    database.conn.execute("CREATE EXTENSION plpython3u")
    database.conn.execute("CREATE FUNCTION py_one() RETURNS int LANGUAGE plpython3u AS 'return 1'")
    status, out = doctor(capsys, database.dsn)
    # This server's Python is 3.11: a note, which 3.12 and later make a failure.
    assert status == 0, out
    assert (
        "note  pl/python: plpython3u is installed in this database, 1 function(s) use it; "
        f"fine with Python {_embedded_python()}, but not with 3.12 or later"
    ) in out
    assert "DROP EXTENSION plpython3u" in out


def test_a_managed_service_is_told_to_use_a_gateway(capsys):
    """A PostgreSQL without Multicorn2 whose roles say RDS (rds_superuser)."""
    public = Path(tempfile.mkdtemp(prefix="cognito-fdw-plain-"))
    public.chmod(0o755)
    pg = LocalPostgres()
    pg.bindir = without_multicorn(postgres_bindir(), public)
    try:
        pg.start()
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("CREATE ROLE rds_superuser NOLOGIN")
        status, out = doctor(capsys, pg.dsn)
        assert status == 1
        assert "FAIL  multicorn: Multicorn2 is not installed in this PostgreSQL\n" in out
        assert "fix: use a gateway: docs/managed-postgresql.md" in out
        assert (
            "FAIL  service: this looks like Amazon RDS for PostgreSQL (role rds_superuser), "
            "which cannot load Multicorn2"
        ) in out
    finally:
        pg.cleanup()
        shutil.rmtree(public, ignore_errors=True)


def test_a_missing_or_disabled_guard_fails(database, pool, capsys):
    make_server(database.conn, "open", pool.pool_id, database.endpoint, guard=False)
    status, out = doctor(capsys, database.dsn)
    assert status == 1
    assert "FAIL  guard: the cognito_fdw guard is not installed" in out
    assert "fix: install it as a superuser in this database: psql -f sql/guard.sql" in out
    database.conn.execute((SCRIPTS / "guard.sql").read_text())
    database.conn.execute("ALTER EVENT TRIGGER cognito_fdw_guard DISABLE")
    status, out = doctor(capsys, database.dsn)
    assert status == 1
    assert "FAIL  guard: the cognito_fdw guard is disabled" in out


def test_objects_written_past_the_guard_are_failures(database, pool, capsys):
    make_server(database.conn, "past", pool.pool_id, database.endpoint, table=False)
    database.conn.execute("ALTER EVENT TRIGGER cognito_fdw_guard DISABLE")
    database.conn.execute(
        "CREATE FOREIGN TABLE past_users (username text) SERVER past "
        "OPTIONS (object 'users', aws_profile 'admin')"
    )
    database.conn.execute("ALTER EVENT TRIGGER cognito_fdw_guard ENABLE")
    status, out = doctor(capsys, database.dsn)
    assert status == 1
    assert "ok    guard: installed and enabled, for every DDL command" in out
    assert (
        "FAIL  server past: the guard would refuse it now: cognito_fdw: foreign table "
        "public.past_users on server past may not set aws_profile"
    ) in out


def test_missing_extension(database, capsys):
    status, out = doctor(capsys, database.dsn)
    assert status == 1
    assert "FAIL  multicorn: available (3.2) but not created in database doctor_" in out
    assert "fix: CREATE EXTENSION multicorn" in out


def test_unknown_pool(database, capsys):
    make_server(database.conn, "lost", "us-east-1_NoSuchPool", database.endpoint)
    status, out = doctor(capsys, database.dsn)
    assert status == 1
    assert "FAIL  table public.lost_users: Cognito DescribeUserPool failed on user pool " in out
    assert "was not found (ResourceNotFoundException)" in out
    assert "fix: Check user_pool_id and region" in out


def test_no_credentials_for_a_server_without_tables(database, pool, capsys):
    make_server(database.conn, "keyless", pool.pool_id, database.endpoint, keys=False, table=False)
    status, out = doctor(capsys, database.dsn)
    assert status == 1
    assert "info  server keyless: " in out and "no user mapping" in out
    assert "FAIL  server keyless: no foreign table; probe table: " in out
    assert "no usable AWS credentials (NoCredentialsError)" in out
    assert "fix: Set aws_access_key_id and aws_secret_access_key in a user mapping" in out
    # The probe table lived in a rolled-back transaction.
    assert database.conn.execute("SELECT count(*) FROM pg_foreign_table").fetchone()[0] == 0


def test_endpoint_that_refuses(database, pool, capsys):
    make_server(database.conn, "refused", pool.pool_id, f"http://127.0.0.1:{free_port()}")
    status, out = doctor(capsys, database.dsn)
    assert status == 1
    assert "FAIL  table public.refused_users: " in out
    assert "could not be reached" in out


def test_unreachable_database(capsys):
    status, out = doctor(capsys, f"host=127.0.0.1 port={free_port()} user=postgres")
    assert status == 1
    assert "FAIL  connection: " in out and "fix: check the DSN" in out


@pytest.mark.skipif(
    multicorn_missing(postgres_bindir()) is not None, reason="needs local PostgreSQL + Multicorn2"
)
def test_wrong_python_path(moto, pool, capsys):
    """Servers defined while the install worked, then PostgreSQL restarted with a PYTHONPATH
    that lacks cognito_fdw (boto3 stays importable from the system's dist-packages)."""
    pg = LocalPostgres().start()
    try:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            make_server(conn, "good", pool.pool_id, moto.url)
        pg.stop()
        empty = tempfile.mkdtemp(prefix="cognito-fdw-empty-")
        broken = LocalPostgres(base=pg.base, port=pg.port, env={"PYTHONPATH": empty}).start()
        status, out = doctor(capsys, pg.dsn)
        assert status == 1
        assert "FAIL  wrapper: the server's Python cannot import cognito_fdw" in out
        assert "FAIL  table public.good_users: the server's Python cannot import cognito_fdw" in out
        assert "PYTHONPATH of the PostgreSQL server" in out
        assert "terminated by signal" not in broken.log()
    finally:
        pg.cleanup()


def test_settings_that_expose_multicorn_crashes_are_reported(database, pool, capsys):
    make_server(database.conn, "exposed", pool.pool_id, database.endpoint)
    conn = database.conn
    conn.execute(
        "CREATE FOREIGN TABLE exposed_members (group_name text, username text, membership "
        "text) SERVER exposed OPTIONS (object 'group_members', writable 'true')"
    )
    role = f"r_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role}")
    conn.execute(f"GRANT INSERT ON exposed_members TO {role}")
    name = conn.info.dbname
    conn.execute(f"ALTER DATABASE {name} SET session_preload_libraries = 'auto_explain'")
    try:
        status, out = doctor(capsys, database.dsn)
        assert "note  auto_explain: loaded (session_preload_libraries, database setting) " in out
        conn.execute(f"ALTER DATABASE {name} SET auto_explain.log_min_duration = 0")
        status, out = doctor(capsys, database.dsn)
    finally:
        conn.execute(f"ALTER DATABASE {name} RESET session_preload_libraries")
        conn.execute(f"ALTER DATABASE {name} RESET auto_explain.log_min_duration")
    assert status == 1
    assert "FAIL  auto_explain: loaded (session_preload_libraries, database setting)" in out
    # doctor pins search_path to pg_catalog, so names come schema-qualified.
    assert f"warn  INSERT: granted on public.exposed_members to {role}" in out
    assert "COPY FROM: not refused" not in out  # the guard's trigger is on both tables
    conn.execute("DROP EVENT TRIGGER cognito_fdw_guard")
    conn.execute("DROP TRIGGER " + conn.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'exposed_members'::regclass"
    ).fetchone()[0] + " ON exposed_members")  # fmt: skip
    status, out = doctor(capsys, database.dsn)
    assert "FAIL  COPY FROM: not refused on public.exposed_members" in out


def test_doctor_runs_no_code_of_another_role(database, pool, capsys):
    """The issue's route: a role's own foreign table with a column of a domain whose CHECK
    calls the role's function ran that function as doctor's superuser (its COPY ... TO
    PROGRAM escaped the rollback).  Here the function advances a sequence of the role's,
    which a rollback does not undo either."""
    conn = database.conn
    make_server(conn, "good", pool.pool_id, database.endpoint)
    role = f"r_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role} LOGIN")
    conn.execute(f"CREATE SCHEMA {role} AUTHORIZATION {role}")
    conn.execute(f"GRANT USAGE ON FOREIGN SERVER good TO {role}")
    dsn = database.dsn.replace("user=postgres", f"user={role}")
    with psycopg.connect(dsn, autocommit=True) as mine:
        mine.execute(f"CREATE SEQUENCE {role}.ran")
        mine.execute(
            f"CREATE FUNCTION {role}.check(text) RETURNS boolean LANGUAGE plpgsql AS $$ "
            f"BEGIN IF current_user <> {literal(role)} THEN PERFORM nextval('{role}.ran'); "
            "END IF; RETURN true; END $$"
        )
        mine.execute(f"CREATE DOMAIN {role}.name AS text CHECK ({role}.check(VALUE))")
        mine.execute(f"GRANT USAGE ON SCHEMA {role} TO PUBLIC")
        mine.execute(
            "CREATE USER MAPPING FOR CURRENT_USER SERVER good OPTIONS "
            "(aws_access_key_id 'AKIDTESTING', aws_secret_access_key 'testing-secret')"
        )
        mine.execute(f"CREATE FOREIGN TABLE {role}.bait (username {role}.name) SERVER good "
                     "OPTIONS (object 'users')")  # fmt: skip
        assert mine.execute(f"SELECT count(*) FROM {role}.bait").fetchone()[0] > 0
    # A superuser's own table with the role's domain in a column runs the role's code too.
    conn.execute(f"CREATE FOREIGN TABLE public.admins_bait (username {role}.name) SERVER good "
                 "OPTIONS (object 'users')")  # fmt: skip
    # And a planted function in public with an exact signature for doctor's own query.
    conn.execute(
        "CREATE FUNCTION public.planted_eq(text, text) RETURNS boolean LANGUAGE sql AS "
        f"$$ SELECT nextval('{role}.ran') IS NULL $$"
    )
    conn.execute(
        "CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = planted_eq)"
    )

    status, out = doctor(capsys, database.dsn + " options='-c search_path=public,pg_catalog'")

    with psycopg.connect(dsn, autocommit=True) as mine:
        ran = mine.execute(f"SELECT last_value, is_called FROM {role}.ran").fetchone()
    record(
        "attack",
        "cognito-fdw doctor (as a superuser) meets a role's table with a domain whose CHECK "
        "calls the role's function",
        "not probed; the role's function never ran" if not ran[1] else "the function ran",
    )
    assert not ran[1], out
    assert f"note  table {role}.bait: not probed: owned by a role" in out
    assert "note  table public.admins_bait: not probed: column username (type" in out
    assert "ok    table public.good_users" in out
