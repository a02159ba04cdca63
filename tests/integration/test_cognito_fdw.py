"""Tier 2: sql/cognito_fdw.sql run by a superuser in a database where other roles create
objects.  What it installs is tested through the README's path (test_readme_path.py) and
the guard's tests (test_guard.py)."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from ..support.planted import preowned_schema_run, superuser_run
from ..support.postgres import SCRIPTS, Database, psql, role_dsn
from ..support.reliability import record

COGNITO_FDW_SQL = SCRIPTS / "cognito_fdw.sql"
# The superuser's DDL after the install, which the guard (sql/guard.sql, included) judges.
GUARDED_DDL = """
ALTER SERVER cognito_server OPTIONS (ADD max_attempts '3', ADD connect_timeout '2.5');
CREATE FOREIGN TABLE cognito.members (group_name text, username text, membership text)
  SERVER cognito_server OPTIONS (object 'group_members', writable 'true', max_attempts '2');
ALTER USER MAPPING FOR CURRENT_USER SERVER cognito_server OPTIONS (
  ADD role_arn 'arn:aws:iam::123456789012:role/r', ADD role_session_name 'x1');
SELECT * FROM cognito_fdw_guard.audit();
"""


@pytest.mark.parametrize("path", ["default", "public first"])
def test_a_superuser_running_cognito_fdw_sql_calls_no_planted_function(server, path):
    name = f"install_{path.split()[0]}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    target = Database(server, name)
    try:
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION multicorn")
        run = superuser_run(
            target, COGNITO_FDW_SQL, GUARDED_DDL, path == "public first",
            "-v", "user_pool_id=us-east-1_Abc123", "-v", "endpoint_url=http://127.0.0.1:9",
            "-v", "aws_access_key_id=AKIDX", "-v", "aws_secret_access_key=secret",
            also=(SCRIPTS / "guard.sql", SCRIPTS / "monitor.sql"),
        )  # fmt: skip
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            installed = conn.execute("SELECT count(*) FROM pg_catalog.pg_foreign_table").fetchone()[
                0
            ]
        record(
            "attack",
            f"cognito_fdw.sql run by a superuser ({path} search_path) with "
            f"{run.planted} functions/operators planted in public and pg_temp",
            f"none called ({run.calls} calls; the control reached {run.control})",
        )
        assert run.planted > 100 and run.control >= 1
        assert run.calls == 0, run.called()
        assert installed == 5  # users, group_members, and monitor.sql's three
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.mark.parametrize("schema", ["cognito_fdw_guard", "cognito_fdw_monitor"])
def test_cognito_fdw_sql_refuses_a_schema_of_its_own_another_role_made_first(server, schema):
    """A database's owner (no superuser) makes the guard's (or the monitor's) schema before
    a superuser installs there: as the schema's owner, DROP SCHEMA cognito_fdw_guard
    CASCADE dropped the guard's event triggers with it (PostgreSQL checks no ownership of
    what a CASCADE takes), and the monitor's views would call a servers_of() it put back.
    The install refuses and puts nothing there."""
    done, functions = preowned_schema_run(
        server, COGNITO_FDW_SQL, schema, "-v", "user_pool_id=us-east-1_Abc123"
    )
    record(
        "attack",
        f"a database owner makes schema {schema} before a superuser runs cognito_fdw.sql",
        "refused: " + next((x for x in done.stderr.splitlines() if "ERROR" in x), "?")[:140],
    )
    assert done.returncode != 0
    assert f"schema {schema} is not safe to install into" in done.stderr
    assert functions == 0


PLANTED_FIRST = {
    # A role that may own Multicorn servers names one as the install will.
    "server": "CREATE SERVER cognito_server FOREIGN DATA WRAPPER multicorn OPTIONS (wrapper "
    "'cognito_fdw.CognitoFdw', user_pool_id 'us-east-1_Evil1', endpoint_url 'http://127.0.0.1:9')",
    # A role that owns schema cognito puts a users table of its own there.
    "users table": "CREATE TABLE cognito.users (username text, email text, sub text)",
    # Schema cognito alone: as its owner, the role drops the install's cognito.users after
    # and puts a view of its own there, whose functions run as whoever reads it.
    "schema": "COMMENT ON SCHEMA cognito IS 'mine'",
}


@pytest.mark.parametrize("planted", PLANTED_FIRST)
def test_cognito_fdw_sql_refuses_a_server_or_table_another_role_made_first(server, planted):
    """CREATE SERVER IF NOT EXISTS and CREATE FOREIGN TABLE IF NOT EXISTS kept what another
    role had made under those names: the superuser's keys went into a user mapping on that
    role's server (signing requests sent to its endpoint), and cognito.users read what that
    role chose.  The install refuses before the keys are written anywhere."""
    name = f"first_{uuid.uuid4().hex[:8]}"
    role = f"r_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
        conn.execute(f"CREATE ROLE {role} LOGIN")
    target = Database(server, name)
    try:
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION multicorn")
            conn.execute(f"GRANT USAGE ON FOREIGN DATA WRAPPER multicorn TO {role}")
            conn.execute(f"CREATE SCHEMA cognito AUTHORIZATION {role}")
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as conn:
            conn.execute(PLANTED_FIRST[planted])
        done = psql(
            target, "-v", "user_pool_id=us-east-1_Abc123", "-v", "aws_access_key_id=AKIDX",
            "-v", "aws_secret_access_key=FirstCanarySecret", "-f", str(COGNITO_FDW_SQL),
        )  # fmt: skip
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            mappings = conn.execute("SELECT count(*) FROM pg_user_mapping").fetchone()[0]
        record(
            "attack",
            f"a role makes the {planted} the README's install names before a superuser runs it",
            "refused: " + next((x for x in done.stderr.splitlines() if "ERROR" in x), "?")[:140],
        )
        assert done.returncode != 0
        assert "already exists, owned by another role" in done.stderr
        assert mappings == 0
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE {role}")


@pytest.mark.local_only  # a database of its own, with roles that log in with no password
def test_cognito_fdw_sql_without_a_pool_runs_no_operator_of_the_database_owner(server):
    """A database's owner (no superuser) sets the database's search_path to ``public,
    pg_catalog`` (ALTER DATABASE ... SET: a superuser's psql session starts with it too) and
    plants ``/(integer, integer)`` in public (its own on PostgreSQL 15).  A superuser runs
    cognito_fdw.sql without -v user_pool_id: the script stops, and ran its stop (``1 / 0``,
    before it pins its search_path) through the owner's operator, as the superuser."""
    name = f"nopool_{uuid.uuid4().hex[:8]}"
    role = f"r_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"CREATE DATABASE {name} OWNER {role}")
    target = Database(server, name)
    try:
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as owner:
            owner.execute(f"ALTER DATABASE {name} SET search_path = public, pg_catalog")
            owner.execute("CREATE SEQUENCE public.ran_as_superuser")
            owner.execute("GRANT USAGE, UPDATE ON SEQUENCE public.ran_as_superuser TO PUBLIC")
            owner.execute(
                "CREATE FUNCTION public.div(integer, integer) RETURNS integer LANGUAGE plpgsql"
                " AS $f$BEGIN IF (SELECT r.rolsuper FROM pg_catalog.pg_roles r"
                "               WHERE r.rolname OPERATOR(pg_catalog.=) current_user) THEN"
                "  PERFORM pg_catalog.nextval('public.ran_as_superuser'); END IF;"
                " RETURN 1; END$f$"
            )
            owner.execute(
                "CREATE OPERATOR public./ (LEFTARG = integer, RIGHTARG = integer,"
                " FUNCTION = public.div)"
            )
        done = psql(target, "-f", str(COGNITO_FDW_SQL))
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            ran = conn.execute(
                "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM public.ran_as_superuser"
            ).fetchone()[0]
        record(
            "attack",
            "a database owner sets the database's search_path to public first and plants "
            "/(integer, integer) there; a superuser runs cognito_fdw.sql without a pool",
            f"stopped, the operator called {ran} times as the superuser: "
            + next((x for x in done.stderr.splitlines() if "ERROR" in x), "?")[:100],
        )
        assert done.returncode != 0
        assert "set the pool with -v user_pool_id" in done.stdout + done.stderr
        assert ran == 0
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE {role}")


@pytest.mark.local_only  # a database of its own, with roles that log in with no password
def test_cognito_fdw_sql_creates_multicorn_in_no_schema_another_role_owns(server):
    """A role with CREATE on the database (no superuser, not its owner) makes a schema named
    after the superuser that will install: first in the default search_path ("$user",
    public), it is where CREATE EXTENSION puts multicorn.  As that schema's owner, DROP
    SCHEMA ... CASCADE then took multicorn with its wrapper, the install's server, user
    mapping and users table.  The install refuses before creating the extension there."""
    name = f"userschema_{uuid.uuid4().hex[:8]}"
    role = f"r_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        superuser = conn.execute("SELECT current_user").fetchone()[0]
        conn.execute(f"CREATE DATABASE {name}")
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT CREATE ON DATABASE {name} TO {role}")
    target = Database(server, name)
    try:
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{superuser}"')
        done = psql(
            target, "-v", "user_pool_id=us-east-1_Abc123", "-v", "aws_access_key_id=AKIDX",
            "-v", "aws_secret_access_key=secret", "-f", str(COGNITO_FDW_SQL),
        )  # fmt: skip
        with psycopg.connect(role_dsn(target.dsn, role), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{superuser}" CASCADE')
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            extensions = conn.execute(
                "SELECT count(*) FROM pg_extension WHERE extname = 'multicorn'"
            ).fetchone()[0]
            servers = conn.execute("SELECT count(*) FROM pg_foreign_server").fetchone()[0]
        record(
            "attack",
            "a role with CREATE on the database makes a schema named after the installing "
            'superuser (first in "$user", public) before cognito_fdw.sql, then DROP SCHEMA '
            "CASCADE",
            "refused: " + next((x for x in done.stderr.splitlines() if "ERROR" in x), "?")[:140],
        )
        assert done.returncode != 0, (extensions, servers)
        assert "extension multicorn is, or would be created, in a schema" in done.stderr
        assert extensions == 0 and servers == 0
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE {role}")
