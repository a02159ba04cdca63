"""Tier 2: a hostile role against the guard, on a server of its own with the guard and vault.

The role ``mallory`` has what a DBA grants a role that may read Cognito: USAGE on the
cognito server, its own user mapping, TEMP, CREATE on its own schema, SELECT on a table.
Every route a review found around the guard, and the kinds they stand for (other command
tags, shadowed catalogs, option case and quoting, every option in every place, IMPORT
FOREIGN SCHEMA), is tried; each must be refused, and the postmaster must never restart.
What each case did is recorded for SECURITY.md (``make reliability`` writes it).
"""

from __future__ import annotations

import http.server
import threading
import time

import psycopg
import pytest

from cognito_fdw.errors import OptionError
from cognito_fdw.options import REGISTRY, TABLE, USER_MAPPING, parse_options
from cognito_fdw.tools.devstack import LocalPostgres

from ..support.pool import POOL_REGION
from ..support.postgres import (
    TEST_KEYS,
    damage,
    install_readme_setup,
    literal,
    options_sql,
    role_dsn,
)
from ..support.reliability import record

ROLE = "mallory"
SECRET = "GuardCanarySecret-7f3a9c"  # must never reach the server log


@pytest.fixture(scope="module")
def guarded(moto, pool):
    """A server with sql/cognito_fdw.sql (and so the guard) and sql/vault.sql installed."""
    pg = LocalPostgres().start()
    install_readme_setup(pg, user_pool_id=pool.pool_id, endpoint_url=moto.url, **TEST_KEYS)
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        pg.started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
        conn.execute(f"CREATE ROLE {ROLE} LOGIN")
        conn.execute(f"CREATE SCHEMA {ROLE} AUTHORIZATION {ROLE}")
        conn.execute(f"GRANT USAGE ON FOREIGN SERVER cognito_server TO {ROLE}")
        conn.execute(f"GRANT USAGE ON SCHEMA cognito TO {ROLE}")
        conn.execute(f"GRANT SELECT ON cognito.users TO {ROLE}")
    pg.mallory = role_dsn(pg.dsn, ROLE)
    with psycopg.connect(pg.mallory, autocommit=True) as conn:
        conn.execute(
            "CREATE USER MAPPING FOR CURRENT_USER SERVER cognito_server OPTIONS "
            "(aws_access_key_id 'AKIDTESTING', aws_secret_access_key 'testing-secret')"
        )
        conn.execute(
            f"CREATE FOREIGN TABLE {ROLE}.mine (username text) SERVER cognito_server "
            "OPTIONS (object 'users')"
        )
    yield pg
    log = pg.log()
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        restarted = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0] != pg.started
    pg.cleanup()
    assert not restarted, "the postmaster restarted during the guard tests"
    assert not damage(log)
    assert SECRET not in log


@pytest.fixture
def mallory(guarded):
    with psycopg.connect(guarded.mallory, autocommit=True) as conn:
        yield conn


def refused(conn, sql: str, case: str, match: str = "") -> psycopg.Error:
    """Run ``sql`` as the attacker; it must fail (and nothing of it stay)."""
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(sql)
    error = caught.value
    record("attack", case, f"refused: {error.diag.message_primary}"[:160])
    assert match in error.diag.message_primary
    return error


SHADOWED = ["pg_foreign_server", "pg_user_mapping", "pg_foreign_table", "pg_attribute",
            "pg_foreign_data_wrapper", "pg_proc", "pg_roles", "pg_class"]  # fmt: skip


def test_the_role_reads_through_its_own_mapping_and_table(guarded, mallory, pool):
    count = mallory.execute(f"SELECT count(*) FROM {ROLE}.mine").fetchone()[0]
    assert count == len(pool.users)
    record("attack", "baseline: USAGE, own mapping, own table", f"reads {count} users")


# -- every server-only option, through every command that writes table options ----------

SERVER_ONLY = [row.name for row in REGISTRY if TABLE not in row.places]
TABLE_COMMANDS = {
    "ALTER TABLE": "ALTER TABLE {t} OPTIONS (ADD {opt} {val})",
    "ALTER FOREIGN TABLE": "ALTER FOREIGN TABLE {t} OPTIONS (ADD {opt} {val})",
    "CREATE FOREIGN TABLE": "CREATE FOREIGN TABLE {t}_new (username text) SERVER "
    "cognito_server OPTIONS (object 'users', {opt} {val})",
}
_VALUES = {"endpoint_url": "http://127.0.0.1:47001", "sts_endpoint_url": "http://127.0.0.1:47002",
           "user_pool_id": "us-east-1_Other1", "secrets_conninfo": "host=127.0.0.1 port=47003",
           "role_arn": "arn:aws:iam::123456789012:role/admin", "aws_profile": "admin",
           "secret_cache_seconds": "0", "retry_mode": "adaptive",
           "region": "us-east-1"}  # fmt: skip


@pytest.mark.parametrize("command", TABLE_COMMANDS)
@pytest.mark.parametrize("option", [o for o in SERVER_ONLY if o != "object"])
def test_server_options_on_a_table_are_refused_whatever_the_command(mallory, command, option):
    value = _VALUES.get(option, "1")
    sql = TABLE_COMMANDS[command].format(t=f"{ROLE}.mine", opt=option, val=literal(value))
    refused(mallory, sql, f"{command} ... OPTIONS ({option})", f"may not set {option}")


LIMITS = [row for row in REGISTRY if row.limit]


@pytest.mark.parametrize("row", LIMITS, ids=[row.name for row in LIMITS])
def test_a_table_may_lower_a_limit_never_raise_it(mallory, row):
    refused(
        mallory,
        f"ALTER TABLE {ROLE}.mine OPTIONS (ADD {row.name} {literal(str(row.high))})",
        f"ALTER TABLE ... OPTIONS ({row.name} above the server's)",
        f"may not raise {row.name}",
    )
    mallory.execute(f"ALTER TABLE {ROLE}.mine OPTIONS (ADD {row.name} {literal(str(row.low))})")
    mallory.execute(f"ALTER TABLE {ROLE}.mine OPTIONS (DROP {row.name})")
    record("attack", f"table lowers {row.name}", "accepted (a table may lower a limit)")


# -- user mappings ---------------------------------------------------------------------

MAPPING_ATTACKS = [
    ("wrapper", "ADD wrapper 'multicorn.csvfdw.CsvFdw', ADD filename '/etc/passwd'",
     "may not set wrapper"),
    ("endpoint_url", "ADD endpoint_url 'http://127.0.0.1:47001'", "may not set endpoint_url"),
    ("aws_profile", "ADD aws_profile 'admin'", "may not set aws_profile"),
    ("secrets_conninfo", "ADD secrets_conninfo 'host=127.0.0.1'", "may not set secrets_conninfo"),
    ("sts_endpoint_url", "ADD sts_endpoint_url 'http://127.0.0.1:1'",
     "may not set sts_endpoint_url"),
    ("role on the server's credentials",
     "DROP aws_secret_access_key, ADD role_arn 'arn:aws:iam::123456789012:role/admin'",
     "without credentials of its own"),
    ("the server's role, another way", "ADD role_duration_seconds '43200'",
     "without role_arn"),
    ("quoted case", "ADD \"Endpoint_URL\" 'http://127.0.0.1:47001'",
     "unknown option: Endpoint_URL"),
    ("trailing space", "ADD \"endpoint_url \" 'http://127.0.0.1:47001'", "unknown option"),
    ("misspelling", "ADD endpont_url 'http://127.0.0.1:47001'",
     "unknown option: endpont_url (did you mean endpoint_url?)"),
    ("limit", "ADD max_requests_per_second '1000'", "may not set max_requests_per_second"),
    ("statement budget", "ADD max_requests_per_statement '100000'",
     "may not set max_requests_per_statement"),
    ("cache", "ADD cache_ttl '3600'", "may not set cache_ttl"),
]  # fmt: skip


@pytest.mark.parametrize(
    "case, options, match", MAPPING_ATTACKS, ids=[c[0] for c in MAPPING_ATTACKS]
)
def test_user_mapping_carries_only_its_own_credentials(mallory, case, options, match):
    refused(
        mallory,
        f"ALTER USER MAPPING FOR CURRENT_USER SERVER cognito_server OPTIONS ({options})",
        f"ALTER USER MAPPING ... OPTIONS ({case})",
        match,
    )


# -- shadowed catalogs and functions ---------------------------------------------------


@pytest.mark.parametrize("catalog", SHADOWED)
def test_temporary_relations_do_not_blind_the_guard(guarded, catalog):
    with psycopg.connect(guarded.mallory, autocommit=True) as conn:
        # pg_attribute has a column of a pseudo-type no view can hold: the guard's columns.
        columns = "attrelid, attname, attnum, attisdropped, attfdwoptions"
        conn.execute(
            f"CREATE TEMP VIEW {catalog} AS SELECT "
            f"{columns if catalog == 'pg_attribute' else '*'} FROM pg_catalog.{catalog} WHERE false"
        )
        # Functions are never looked up in pg_temp; a schema of the role's own, first in
        # its search_path, is the other way to try to stand in for the guard's calls.
        conn.execute(f"SET search_path = {ROLE}, pg_temp, pg_catalog")
        conn.execute(
            f"CREATE OR REPLACE FUNCTION {ROLE}.pg_options_to_table(text[], OUT option_name "
            "text, OUT option_value text) RETURNS SETOF record LANGUAGE sql AS "
            "'SELECT NULL::text, NULL::text WHERE false'"
        )
        refused(
            conn,
            "ALTER USER MAPPING FOR CURRENT_USER SERVER cognito_server "
            "OPTIONS (ADD wrapper 'multicorn.fsfdw.FilesystemFdw')",
            f"temp view {catalog} + own pg_options_to_table, then a mapping's wrapper",
            "may not set wrapper",
        )
        refused(
            conn,
            f"ALTER TABLE {ROLE}.mine OPTIONS (ADD endpoint_url 'http://127.0.0.1:47001')",
            f"temp view {catalog}, then ALTER TABLE ... endpoint_url",
            "may not set endpoint_url",
        )


def test_the_guard_cannot_be_switched_off_or_called(mallory):
    for sql, case in [
        ("ALTER EVENT TRIGGER cognito_fdw_guard DISABLE", "disable the event trigger"),
        ("DROP EVENT TRIGGER cognito_fdw_guard", "drop the event trigger"),
        ("SET session_replication_role = replica", "replica mode (skips event triggers)"),
        ("UPDATE cognito_fdw_guard.policy SET plaintext_keys = 'allowed'", "change the policy"),
        ("SELECT cognito_fdw_guard.check_options('x', '{}', 'table', '{}')", "call the guard"),
    ]:
        refused(mallory, sql, case)


# -- other routes ------------------------------------------------------------------------


def test_import_foreign_schema_options_and_imported_tables_are_guarded(guarded, mallory):
    refused(
        mallory,
        f"IMPORT FOREIGN SCHEMA cognito FROM SERVER cognito_server INTO {ROLE} "
        "OPTIONS (endpoint_url 'http://127.0.0.1:47001')",
        "IMPORT FOREIGN SCHEMA ... OPTIONS (endpoint_url)",
        "unknown IMPORT FOREIGN SCHEMA option",
    )
    mallory.execute(f"IMPORT FOREIGN SCHEMA cognito LIMIT TO (users) FROM SERVER cognito_server "
                    f"INTO {ROLE}")  # fmt: skip
    refused(
        mallory,
        f"ALTER TABLE {ROLE}.users OPTIONS (ADD aws_profile 'admin')",
        "IMPORT FOREIGN SCHEMA, then ALTER TABLE ... aws_profile",
        "may not set aws_profile",
    )


def test_a_partition_and_column_options_are_guarded(mallory):
    mallory.execute(f"CREATE TABLE {ROLE}.parent (username text) PARTITION BY LIST (username)")
    refused(
        mallory,
        f"CREATE FOREIGN TABLE {ROLE}.part PARTITION OF {ROLE}.parent DEFAULT "
        "SERVER cognito_server OPTIONS (object 'users', endpoint_url 'http://127.0.0.1:1')",
        "CREATE FOREIGN TABLE ... PARTITION OF ... OPTIONS (endpoint_url)",
        "may not set endpoint_url",
    )
    refused(
        mallory,
        f"ALTER TABLE {ROLE}.mine ALTER COLUMN username OPTIONS (ADD wrapper 'x')",
        "ALTER TABLE ... ALTER COLUMN ... OPTIONS (wrapper)",
        "unknown column option wrapper",
    )


def test_a_role_cannot_make_a_multicorn_server_of_its_own(guarded, mallory):
    refused(
        mallory,
        "CREATE SERVER evil FOREIGN DATA WRAPPER multicorn OPTIONS "
        "(wrapper 'multicorn.fsfdw.FilesystemFdw')",
        "CREATE SERVER on multicorn without USAGE on it",
        "permission denied",
    )
    with psycopg.connect(guarded.dsn, autocommit=True) as admin:
        admin.execute("CREATE ROLE owner_role LOGIN")
        admin.execute("GRANT USAGE ON FOREIGN DATA WRAPPER multicorn TO owner_role")
    with psycopg.connect(role_dsn(guarded.dsn, "owner_role")) as owner:
        owner.autocommit = True
        refused(
            owner,
            "CREATE SERVER fs FOREIGN DATA WRAPPER multicorn OPTIONS "
            "(wrapper 'multicorn.fsfdw.FilesystemFdw')",
            "a non-superuser server owner loads another Multicorn class",
            "may not load wrapper",
        )
        # Multicorn calls any attribute of any module named, so a name inside the package is
        # no safer than another class: only the wrapper's own.
        refused(
            owner,
            "CREATE SERVER helper FOREIGN DATA WRAPPER multicorn OPTIONS "
            "(wrapper 'cognito_fdw.tools.devstack.MotoServer', user_pool_id 'us-east-1_Abc123')",
            "a non-superuser server owner loads another name inside cognito_fdw",
            "may not load wrapper",
        )


def test_many_long_unknown_option_names_are_refused_quickly(mallory):
    """Each unknown name gets a "did you mean": compared with every option it took ~35 ms
    of PL/pgSQL per 63-character name, so one statement could hold a backend for minutes."""
    names = ", ".join(f'"{n:04d}{"y" * 59}" {literal("v")}' for n in range(500))
    started = time.monotonic()
    refused(
        mallory,
        f"CREATE FOREIGN TABLE {ROLE}.many (username text) SERVER cognito_server "
        f"OPTIONS (object 'users', {names})",
        "500 unknown option names of 63 characters (the guard's suggestions)",
        "unknown options",
    )
    assert time.monotonic() - started < 5


def test_a_refused_statement_holding_a_key_is_not_logged(guarded, mallory):
    refused(
        mallory,
        "ALTER USER MAPPING FOR CURRENT_USER SERVER cognito_server OPTIONS "
        f"(SET aws_secret_access_key {literal(SECRET)}, ADD endpont_url 'x')",
        "a refused statement that holds a secret key",
        "unknown option",
    )
    assert SECRET not in guarded.log()
    with psycopg.connect(guarded.dsn, autocommit=True) as admin:
        admin.execute("UPDATE cognito_fdw_guard.policy SET plaintext_keys = 'never'")
        try:
            refused(
                mallory,
                "ALTER USER MAPPING FOR CURRENT_USER SERVER cognito_server OPTIONS "
                f"(SET aws_secret_access_key {literal(SECRET)})",
                "a plain-text key refused by policy 'never'",
                "plain-text secret key",
            )
        finally:
            admin.execute("UPDATE cognito_fdw_guard.policy SET plaintext_keys = 'allowed'")
    assert SECRET not in guarded.log()


# -- the guard and the wrapper say the same ----------------------------------------------

BAD_VALUES = [
    ("regoin", "us-east-1"), ("max_attempt", "3"), ("max_attempts", "100"),
    ("max_attempts", "2.5"), ("connect_timeout", "soon"), ("read_timeout", "1_000"),
    ("retry_mode", "legacy"), ("pushdown", "maybe"), ("endpoint_url", "ftp://x"),
    ("endpoint_url", "http://user:pw@host"), ("region", "mars"), ("region", " "),
    ("role_session_name", "x"), ("role_duration_seconds", "60"),
    ("user_pool_id", "us-east-1_Ünïcødé"), ("aws_session_token", "HEAD\nTAIL"),
    ("secrets_relation", "x" * 3000), ("describe_ttl", "-1"), ("retry_mode", "it's"),
]  # fmt: skip


@pytest.mark.parametrize("name, value", BAD_VALUES, ids=[f"{n}={v[:12]!r}" for n, v in BAD_VALUES])
def test_the_guard_refuses_with_the_wrappers_own_message(guarded, name, value):
    base = {"user_pool_id": "us-east-1_Abc123", "object": "users"}
    with pytest.raises(OptionError) as wrapper:
        parse_options({**base, name: value})
    options = {"wrapper": "cognito_fdw.CognitoFdw", "user_pool_id": "us-east-1_Abc123",
               name: value}  # fmt: skip
    with psycopg.connect(guarded.dsn, autocommit=True) as admin:
        error = refused(
            admin,
            f"CREATE SERVER g FOREIGN DATA WRAPPER multicorn OPTIONS ({options_sql(options)})",
            f"CREATE SERVER with {name} {value[:20]!r} (as a superuser)",
        )
    assert error.diag.message_primary == wrapper.value.message


ROLE_DETAILS = ("external_id", "role_session_name", "role_duration_seconds")


def test_every_place_admits_exactly_the_registry_options(guarded):
    """Each option, tried on a user mapping and on a table, is admitted iff the registry
    says it may be set there (values that are valid, so only the place is judged)."""
    valid = {**_VALUES, "object": "users", "writable": "false", "pushdown": "true",
             "deterministic_collations": "false",
             "aws_access_key_id": "AKIDX", "api_key_id": "x", "api_key_name": "x",
             "role_session_name": "s-name", "role_duration_seconds": "900",
             "external_id": "e", "aws_secret_access_key": "k", "aws_session_token": "t",
             "secrets_relation": "vault.decrypted_secrets"}  # fmt: skip
    with psycopg.connect(guarded.dsn, autocommit=True) as admin:
        for row in REGISTRY:
            value = valid.get(row.name, str(row.low) if row.low is not None else "x")
            for place, sql in (
                (USER_MAPPING, "CREATE USER MAPPING FOR owner_probe SERVER cognito_server "
                 "OPTIONS (aws_access_key_id 'AKIDX', aws_secret_access_key 'k', {o} {v})"),
                (TABLE, "CREATE FOREIGN TABLE probe (username text) SERVER cognito_server "
                 "OPTIONS (object 'users', {o} {v})"),
            ):  # fmt: skip
                if row.name in ("aws_access_key_id", "aws_secret_access_key", "object"):
                    continue
                if place == USER_MAPPING and row.name in ROLE_DETAILS:
                    sql = sql.replace(
                        "{o} {v}", "role_arn 'arn:aws:iam::123456789012:role/r', {o} {v}"
                    )
                admin.execute("BEGIN")
                admin.execute("CREATE ROLE owner_probe")
                try:
                    admin.execute(sql.format(o=row.name, v=literal(value)))
                    admitted = True
                except psycopg.Error as exc:
                    admitted = False
                    assert "may not" in exc.diag.message_primary, exc.diag.message_primary
                finally:
                    admin.execute("ROLLBACK")
                assert admitted == (place in row.places), (row.name, place)


def test_audit_lists_what_was_written_before_the_guard(guarded):
    with psycopg.connect(guarded.dsn, autocommit=True) as admin:
        admin.execute("ALTER EVENT TRIGGER cognito_fdw_guard DISABLE")
        try:
            admin.execute(
                "CREATE FOREIGN TABLE old_t (username text) SERVER cognito_server "
                "OPTIONS (object 'users', endpoint_url 'http://127.0.0.1:1')"
            )
        finally:
            admin.execute("ALTER EVENT TRIGGER cognito_fdw_guard ENABLE")
        rows = admin.execute("SELECT * FROM cognito_fdw_guard.audit()").fetchall()
        admin.execute("DROP FOREIGN TABLE old_t")
    assert rows == [("server cognito_server",
                     "cognito_fdw: foreign table public.old_t on server cognito_server may not set "
                     "endpoint_url")]  # fmt: skip


def test_an_emulator_pool_id_is_admitted(guarded):
    """cognito-local's pool ids (no region prefix) are admitted, as the wrapper admits them."""
    with psycopg.connect(guarded.dsn, autocommit=True) as admin:
        admin.execute(
            "CREATE SERVER local_srv FOREIGN DATA WRAPPER multicorn OPTIONS (wrapper "
            "'cognito_fdw.CognitoFdw', user_pool_id 'local_7DN76x5E', "
            f"region {literal(POOL_REGION)}, "
            "endpoint_url 'http://127.0.0.1:9')"
        )
        options = admin.execute(
            "SELECT srvoptions FROM pg_foreign_server WHERE srvname = 'local_srv'"
        ).fetchone()[0]
        admin.execute("DROP SERVER local_srv")
    assert "user_pool_id=local_7DN76x5E" in options


def test_a_non_superuser_owner_cannot_point_the_secret_loopback_elsewhere(guarded, pool, moto):
    # Red team: the loopback connects as the server's OS user, whose .pgpass password libpq
    # sends to any host that asks for it in clear: the owner's own listener, say.
    with psycopg.connect(guarded.dsn, autocommit=True) as admin:
        admin.execute("CREATE ROLE conninfo_owner LOGIN")
        admin.execute("GRANT USAGE ON FOREIGN DATA WRAPPER multicorn TO conninfo_owner")
    options = (
        f"wrapper 'cognito_fdw.CognitoFdw', user_pool_id '{pool.pool_id}', "
        f"endpoint_url '{moto.url}', aws_access_key_id 'AKIDX', api_key_name 'x'"
    )
    dsn = role_dsn(guarded.dsn, "conninfo_owner")
    with psycopg.connect(dsn, autocommit=True) as owner:
        refused(
            owner,
            "CREATE SERVER loop FOREIGN DATA WRAPPER multicorn OPTIONS "
            f"({options}, secrets_conninfo 'host=192.0.2.1 port=5432')",
            "a non-superuser server owner sets secrets_conninfo",
            "may carry secrets_conninfo only if a superuser sets it",
        )
        owner.execute(f"CREATE SERVER loop FOREIGN DATA WRAPPER multicorn OPTIONS ({options})")
        refused(
            owner,
            "ALTER SERVER loop OPTIONS (ADD secrets_conninfo 'host=192.0.2.1')",
            "a non-superuser server owner adds secrets_conninfo",
            "may carry secrets_conninfo only if a superuser sets it",
        )
    with psycopg.connect(guarded.dsn, autocommit=True) as admin:
        admin.execute("ALTER SERVER loop OPTIONS (ADD secrets_conninfo 'host=/tmp')")
        admin.execute("DROP SERVER loop")


class _InternalService(http.server.BaseHTTPRequestHandler):
    """Stands for a service only the database server's host reaches (a metadata service,
    an admin API): it answers any POST with text that holds a canary."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = f"{INTERNAL_CANARY} at {self.path}".encode()
        self.send_response(403)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


INTERNAL_CANARY = "internal-token-5b1e0c"


def test_an_owner_cannot_read_an_internal_service_through_endpoint_url(guarded, pool):
    # Red team: a non-superuser server owner set endpoint_url to a service of the database
    # server's network, and the error about the answer showed its body (SSRF, read back).
    service = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _InternalService)
    threading.Thread(target=service.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{service.server_address[1]}/latest/meta-data/"
    try:
        with psycopg.connect(guarded.dsn, autocommit=True) as admin:
            admin.execute("CREATE ROLE ssrf_owner LOGIN")
            admin.execute("GRANT USAGE ON FOREIGN DATA WRAPPER multicorn TO ssrf_owner")
            admin.execute("GRANT CREATE ON SCHEMA public TO ssrf_owner")
        dsn = guarded.dsn.replace("user=postgres", "user=ssrf_owner")
        with psycopg.connect(dsn, autocommit=True) as owner:
            owner.execute(
                "CREATE SERVER inward FOREIGN DATA WRAPPER multicorn OPTIONS (wrapper "
                f"'cognito_fdw.CognitoFdw', user_pool_id '{pool.pool_id}', endpoint_url "
                f"'{url}', aws_access_key_id 'AKIDTESTING', aws_secret_access_key 'testing-secret')"
            )
            owner.execute(
                "CREATE FOREIGN TABLE public.inward (username text) SERVER inward "
                "OPTIONS (object 'users')"
            )
            error = refused(
                owner,
                "SELECT * FROM public.inward",
                "a non-superuser owner points endpoint_url at a service of the server's network",
                "not an answer of Cognito's API",
            )
            shown = f"{error.diag.message_primary} {error.diag.message_detail}"
            assert INTERNAL_CANARY not in shown
            assert "the body is shown to superusers only" in error.diag.message_detail
        # A superuser may read what the server's host reaches anyway: the body helps them.
        with psycopg.connect(guarded.dsn, autocommit=True) as admin:
            with pytest.raises(psycopg.Error) as caught:
                admin.execute("SELECT * FROM public.inward")
            assert INTERNAL_CANARY in caught.value.diag.message_detail
            admin.execute("DROP SERVER inward CASCADE")
    finally:
        service.shutdown()
