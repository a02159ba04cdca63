"""Tier 2: sql/monitor.sql's views (cognito_fdw/monitor.py) read as a pg_monitor role with
no USAGE on any server and no user mapping: the counters agree with the proxy's count,
the rate budget shows its cap, and nothing in them is a key id or a secret."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from ..support.planted import superuser_run
from ..support.pool import POOL_REGION
from ..support.postgres import (
    SCRIPTS,
    TEST_KEYS,
    Database,
    create_server,
    error_of,
    new_role,
    psql,
    role_dsn,
)
from ..support.reliability import record

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def monitored(setup, pool, proxy):
    """mo.users on server mo_srv through the proxy; the monitor views; a login role in
    pg_monitor only."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        create_server(
            conn, "mo_srv", pool.pool_id, proxy.url, region=POOL_REGION,
            max_requests_per_second=7, cache_ttl="30",
        )  # fmt: skip
        conn.execute("CREATE SCHEMA mo")
        conn.execute(
            "CREATE FOREIGN TABLE mo.users (username text, email text) "
            "SERVER mo_srv OPTIONS (object 'users')"
        )
        watcher = new_role(conn)
        conn.execute(f"GRANT pg_monitor TO {watcher}")
    done = psql(setup, "-v", "server=mo_srv", "-f", str(SCRIPTS / "monitor.sql"))
    assert done.returncode == 0, done.stderr
    return watcher


def stats(conn, endpoint: str) -> dict:
    rows = conn.execute(
        "SELECT operation, requests, rows, cache_hits, cache_misses, errors, cognito_ms, servers "
        "FROM cognito_fdw_monitor.request_stats WHERE endpoint = %s",
        (endpoint,),
    ).fetchall()
    return {row[0]: row[1:] for row in rows}


def test_a_monitoring_role_reads_the_counters_without_usage(setup, db, pool, monitored, proxy):
    with psycopg.connect(role_dsn(setup.dsn, monitored), autocommit=True) as watcher:
        assert not watcher.execute("SELECT has_server_privilege('mo_srv', 'USAGE')").fetchone()[0]
        before = stats(watcher, proxy.url)
        proxy.clear()
        name = pool.users[7]["Username"]
        for _ in range(3):  # one request, then two answers from the cache
            db.execute("SELECT * FROM mo.users WHERE username = %s", (name,)).fetchall()
        db.execute("SELECT count(*) FROM mo.users").fetchall()  # a scan: 3 pages
        after = stats(watcher, proxy.url)
        sent = len(proxy.requests("ListUsers"))
        assert sent == 4
        old = before.get("ListUsers", (0, 0, 0, 0, 0, 0.0, None))
        new = after["ListUsers"]
        assert new[0] - old[0] == sent  # requests, as the proxy counted them
        assert new[1] - old[1] == 1 + len(pool.users)  # rows: the lookup's and the scan's
        assert new[2] - old[2] == 2  # cache hits
        assert new[3] - old[3] >= 1  # the first lookup's miss
        assert new[4] == old[4]  # no error
        assert new[5] > old[5]  # time in Cognito
        assert "mo_srv" in new[6]
        budget = watcher.execute(
            "SELECT cap, sent_last_second, waiting FROM cognito_fdw_monitor.rate_budget "
            "WHERE endpoint = %s",
            (proxy.url,),
        ).fetchall()
        assert (7,) in [row[:1] for row in budget]
        assert all(row[1] >= 0 and row[2] >= 0 for row in budget)
        everything = repr(
            [
                watcher.execute(f"SELECT * FROM cognito_fdw_monitor.{view}").fetchall()
                for view in ("request_stats", "rate_budget", "cache")
            ]
        )
        for secret in TEST_KEYS.values():
            assert secret not in everything
        # The tables under the views are not the monitoring role's.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            watcher.execute("SELECT * FROM cognito_fdw_monitor.cache_source")


def test_a_role_that_names_the_objects_itself_reads_and_clears_nothing(setup, db, monitored):
    # The state is the whole server's (every database's pools and counters), so whoever runs
    # the query must be a monitoring role, and only a superuser empties the cache, whoever
    # owns the foreign table: any role that may create one on a cognito server could name
    # these objects.  The cache holds an answer of mo_srv's from the test above.
    intruder = new_role(db)
    db.execute(f"GRANT USAGE ON FOREIGN SERVER mo_srv TO {intruder}")
    db.execute(f"CREATE SCHEMA {intruder} AUTHORIZATION {intruder}")
    db.execute(f"GRANT {intruder} TO {monitored}")  # so the watcher may use its tables too
    with psycopg.connect(role_dsn(setup.dsn, intruder), autocommit=True) as conn:
        conn.execute(
            f"CREATE FOREIGN TABLE {intruder}.c (entry text, pool_id text, region text, "
            "endpoint text, operation text, entries bigint, bytes bigint, "
            "oldest_seconds double precision) SERVER mo_srv OPTIONS (object 'cache')"
        )
        conn.execute(
            f"CREATE FOREIGN TABLE {intruder}.s (pool_id text, operation text, requests bigint) "
            "SERVER mo_srv OPTIONS (object 'request_stats')"
        )
        for statement in (f"SELECT * FROM {intruder}.c", f"SELECT * FROM {intruder}.s",
                          f"DELETE FROM {intruder}.c"):  # fmt: skip
            with pytest.raises(psycopg.Error) as caught:
                conn.execute(statement).fetchall()
            assert caught.value.diag.message_primary.endswith("needs pg_monitor"), statement
            assert "pg_monitor" in caught.value.diag.message_hint
    entries = db.execute("SELECT sum(entries) FROM cognito_fdw_monitor.cache").fetchone()[0]
    assert entries
    # A monitoring role reads through the intruder's table too, but may not empty the cache.
    with psycopg.connect(role_dsn(setup.dsn, monitored), autocommit=True) as watcher:
        assert watcher.execute(f"SELECT count(*) FROM {intruder}.c").fetchone()[0] >= 1
        with pytest.raises(psycopg.Error) as caught:
            watcher.execute(f"DELETE FROM {intruder}.c")
        assert caught.value.diag.message_primary == (
            "cognito_fdw: only a superuser may clear the cache"
        )
    assert db.execute("SELECT sum(entries) FROM cognito_fdw_monitor.cache").fetchone()[0] == (
        entries
    )
    assert db.execute("SELECT cognito_fdw_monitor.clear_cache()").fetchone()[0] == entries


# What a superuser runs after the install: every view and the function the script makes.
MONITOR_CALLS = """
SELECT * FROM cognito_fdw_monitor.request_stats;
SELECT * FROM cognito_fdw_monitor.rate_budget;
SELECT * FROM cognito_fdw_monitor.cache;
SELECT cognito_fdw_monitor.servers_of('us-east-1_Abc123');
"""


@pytest.mark.local_only  # a database of its own, with roles that log in with no password
@pytest.mark.parametrize("path", ["default", "public first"])
def test_a_superuser_running_monitor_sql_alone_calls_no_planted_function(setup, path):
    """monitor.sql run on its own, as its header says (``psql -v server=... -f
    sql/monitor.sql``), not from cognito_fdw.sql: a role with CREATE on public planted
    ``format(text, text, text)``, a closer match than pg_catalog's, and the script's
    ``SELECT format(...) \\gexec`` ran it as the superuser (the role made itself one)."""
    name = f"monitor_{path.split()[0]}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    target = Database(setup, name)
    try:
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION multicorn")
            create_server(conn, "planted_server", "us-east-1_Abc123", "http://127.0.0.1:9")
        run = superuser_run(
            target, SCRIPTS / "monitor.sql", MONITOR_CALLS, path == "public first",
            "-v", "server=planted_server",
        )  # fmt: skip
        with psycopg.connect(target.dsn, autocommit=True) as conn:
            installed = conn.execute("SELECT count(*) FROM pg_catalog.pg_foreign_table").fetchone()
        record(
            "attack",
            f"monitor.sql run alone by a superuser ({path} search_path) with "
            f"{run.planted} functions/operators planted in public and pg_temp",
            f"none called ({run.calls} calls; the control reached {run.control})",
        )
        assert run.planted > 100 and run.control >= 1
        assert run.calls == 0, run.called()
        assert installed == (3,)
    finally:
        with psycopg.connect(setup.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.mark.local_only  # a database of its own, with roles that log in with no password
def test_default_privileges_give_no_role_the_cache_or_the_counters(setup):
    """ALTER DEFAULT PRIVILEGES of the superuser that runs monitor.sql (a role granted
    every new table, function and schema) gave that role DELETE on cache_source and
    clear_cache(), which empty every backend's cache, and the views: monitor.sql revoked
    from PUBLIC only.  pg_monitor keeps its views."""
    name = f"monitor_defacl_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    target = Database(setup, name)
    try:
        with psycopg.connect(target.dsn, autocommit=True) as admin:
            admin.execute("CREATE EXTENSION multicorn")
            create_server(admin, "defacl_server", "us-east-1_Abc123", "http://127.0.0.1:9")
            app = new_role(admin)
            for kind, privilege in (("TABLES", "ALL"), ("FUNCTIONS", "EXECUTE"),
                                    ("SCHEMAS", "USAGE")):  # fmt: skip
                admin.execute(f"ALTER DEFAULT PRIVILEGES GRANT {privilege} ON {kind} TO {app}")
        done = psql(target, "-v", "server=defacl_server", "-f", str(SCRIPTS / "monitor.sql"))
        assert done.returncode == 0, done.stderr
        with psycopg.connect(target.dsn, autocommit=True) as admin:
            # Each object its own defence, as if the schema were granted for another reason.
            admin.execute(f"GRANT USAGE ON SCHEMA cognito_fdw_monitor TO {app}")
            monitor = admin.execute(
                "SELECT has_table_privilege('pg_monitor', 'cognito_fdw_monitor.cache', 'SELECT')"
            ).fetchone()
        refused = []
        with psycopg.connect(role_dsn(target.dsn, app), autocommit=True) as conn:
            for statement in (
                "DELETE FROM cognito_fdw_monitor.cache_source",
                "SELECT cognito_fdw_monitor.clear_cache()",
                "SELECT * FROM cognito_fdw_monitor.cache",
            ):
                refused.append(error_of(conn, statement).diag.message_primary)
    finally:
        with psycopg.connect(setup.dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
    record(
        "attack",
        "a role the monitor's installer gives every new table, function and schema by ALTER "
        "DEFAULT PRIVILEGES empties the cache (DELETE, clear_cache()) or reads the views",
        f"refused: {refused[0]} (each of the three); pg_monitor keeps its views",
    )
    assert refused == [
        "permission denied for foreign table cache_source",
        "permission denied for function clear_cache",
        "permission denied for view cache",
    ]
    assert monitor == (True,)
