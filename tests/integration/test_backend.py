"""Tier 2: parallel sessions with vault credentials never break a backend (docs/multicorn.md H8: no
PostgreSQL call off the backend thread), and a report reaches Multicorn only where PostgreSQL would
show it (docs/multicorn.md H15: every non-error log call leaks its message).

The race a review found: with the secret access key in the vault and
``secret_cache_seconds 0``, every request of a scan's worker threads read the secret, and
reading it called into PostgreSQL (``GetUserNameFromId``, ``get_database_name``) from those
threads.  Four sessions of IN lookups and partitioned scans then corrupted backends within
a minute (``catcache reference ... is not owned by resource owner Portal``, random
``UnicodeDecodeError``, SIGSEGV and crash recovery of the whole cluster).

Here that workload runs against a server and a moto server of its own: moto checks every
signature (IAM authentication is on), so each query proves the vault's secret arrived.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import psycopg
import pytest

from cognito_fdw.plans import MAX_LOOKUPS
from cognito_fdw.pushdown import PARTITION_MIN_USERS
from cognito_fdw.tools.demousers import bulk_users
from cognito_fdw.tools.devstack import LocalPostgres
from cognito_fdw.tools.seed import create_users

from ..support.postgres import (
    create_server,
    damage,
    explain_text,
    install_readme_setup,
    options_sql,
    role_dsn,
)

pytestmark = pytest.mark.server

USERS = PARTITION_MIN_USERS  # the smallest pool the planner reads in 16 parts
SESSIONS = 4
ROUNDS = 8  # per session: an IN lookup on each table and a partitioned scan
TIME_LIMIT = 30.0  # seconds for all sessions' rounds; the old code failed within 10 s
VAULT_SECRET_NAME = "cognito_race"
READER = "race_reader"
# Options shared by both servers: workers on, the secret read again for every scan.
SCAN_OPTIONS = {"scan_workers": "4", "secret_cache_seconds": "0",
                "max_requests_per_second": "1000"}  # fmt: skip


@pytest.fixture(scope="module")
def race_pool(aws):
    """A pool of USERS users in the moto of the credential tests, which checks signatures."""
    cognito = aws.client("cognito-idp")
    pool_id = cognito.create_user_pool(PoolName="race")["UserPool"]["Id"]
    create_users(cognito, pool_id, bulk_users(USERS), threads=16)
    return pool_id


@pytest.fixture(scope="module")
def pg(aws, race_pool):
    """A server of its own with the README's setup (sql/cognito_fdw.sql with the guard,
    sql/vault.sql), IAM user vault's key in the vault, and two tables on it: one through a
    server that names the secret, one through a user mapping that does."""
    pg = LocalPostgres().start()
    install_readme_setup(pg, user_pool_id=race_pool, endpoint_url=aws.url)
    key_id, secret = aws.keys["vault"]
    vault = {"aws_access_key_id": key_id, "api_key_name": VAULT_SECRET_NAME}
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("SET log_statement = 'none'")  # the next statement holds the secret
        conn.execute("SELECT vault.create_secret(%s, %s)", (secret, VAULT_SECRET_NAME))
        conn.execute(f"CREATE ROLE {READER} LOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA vault TO {READER}")
        conn.execute(f"GRANT SELECT ON vault.decrypted_secrets TO {READER}")
        # The secret named by the server itself, and by a user mapping.
        for name, server_options, mapping in (("on_server", vault, {}), ("in_mapping", {}, vault)):
            create_server(
                conn, f"race_{name}", race_pool, aws.url, keys=False,
                **SCAN_OPTIONS, **server_options,
            )  # fmt: skip
            if mapping:
                conn.execute(
                    f"CREATE USER MAPPING FOR PUBLIC SERVER race_{name} "
                    f"OPTIONS ({options_sql(mapping)})"
                )
            conn.execute(
                f"CREATE FOREIGN TABLE public.race_{name} (username text) "
                f"SERVER race_{name} OPTIONS (object 'users')"
            )
            conn.execute(f"GRANT USAGE ON FOREIGN SERVER race_{name} TO {READER}")
            conn.execute(f"GRANT SELECT ON public.race_{name} TO {READER}")
    yield pg
    pg.cleanup()  # the test itself reads the log for damage


TABLES = ("race_on_server", "race_in_mapping")


def _in_list(first: int) -> str:
    return ", ".join(f"'bench{i:06d}'" for i in range(first, first + MAX_LOOKUPS))


def _started(dsn: str, wait: float = 30.0):
    """pg_postmaster_start_time(), waiting out a crash recovery in progress."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                return conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_the_plans_use_workers(pg):
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        for table in TABLES:
            scan = explain_text(conn, f"EXPLAIN SELECT count(*) FROM {table}")
            assert "ListUsers in 16 concurrent parts" in scan and "4 workers" in scan
            lookups = "\n".join(
                r[0]
                for r in conn.execute(
                    f"EXPLAIN SELECT count(*) FROM {table} WHERE username IN ({_in_list(0)})"
                )
            )
            assert f"{MAX_LOOKUPS} lookups" in lookups and "4 at a time" in lookups


def test_parallel_sessions_with_vault_credentials_never_break_a_backend(pg):
    started = _started(pg.dsn)
    log_before = len(pg.log())
    dsns = [pg.dsn, role_dsn(pg.dsn, READER)]
    answers: list[tuple] = []  # (session, statement, rows, expected rows)
    failures: list[tuple] = []  # (seconds into the race, session, error and DETAIL)
    begin = time.monotonic()
    lock = threading.Lock()

    def statements(number: int, round_: int):
        first = (number * 389 + round_ * 97) % (USERS - MAX_LOOKUPS)
        for table in TABLES:
            yield (
                f"SELECT count(*) FROM {table} WHERE username IN ({_in_list(first)})",
                MAX_LOOKUPS,
            )
        yield f"SELECT count(*) FROM {TABLES[(number + round_) % 2]}", USERS

    def failed(number: int, exc: psycopg.Error) -> None:
        detail = exc.diag.message_detail
        line = (exc.diag.message_primary or str(exc) or type(exc).__name__) + (
            f" ({detail[:70]})" if detail else ""
        )
        with lock:
            failures.append((round(time.monotonic() - begin, 1), number, line))

    def session(number: int) -> None:
        # A failed statement is recorded and the session goes on (the crash came after the
        # first errors); a lost connection ends it.
        try:
            with psycopg.connect(dsns[number % 2], autocommit=True) as conn:
                for round_ in range(ROUNDS):
                    for sql, expected in statements(number, round_):
                        if time.monotonic() > begin + TIME_LIMIT or conn.broken:
                            return
                        try:
                            rows = conn.execute(sql).fetchall()
                        except psycopg.Error as exc:
                            failed(number, exc)
                            continue
                        with lock:
                            answers.append((number, sql[:50], rows, [(expected,)]))
        except psycopg.Error as exc:  # connecting, or closing a broken connection
            failed(number, exc)

    threads = [threading.Thread(target=session, args=(n,)) for n in range(SESSIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIME_LIMIT + 60)
    broken = damage(pg.log()[log_before:])
    restarted = _started(pg.dsn) != started
    wrong = [a for a in answers if a[2] != a[3]]
    assert not (failures or broken or restarted or wrong), (
        f"{len(failures)} failed statements, by error: {Counter(f[2] for f in failures)}"
        f"\nthe first (seconds, session, error): {failures[:3]}"
        f"\nserver log: {broken[:6]}\npostmaster restarted: {restarted}"
        f"\nwrong answers: {wrong[:5]}"
    )
    # The race was really run: every session answered at least one full round.
    per_session = Counter(a[0] for a in answers)
    assert all(per_session[n] >= 3 for n in range(SESSIONS)), per_session


@pytest.fixture(scope="module")
def reported(setup):
    """A users table on the session server, in a schema of its own."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA reports")
        conn.execute(
            "CREATE FOREIGN TABLE reports.users (username text) SERVER cognito_server "
            "OPTIONS (object 'users')"
        )
    return setup


@pytest.mark.parametrize(
    ("client", "log", "to_client", "to_log"),
    [("notice", "warning", False, False), ("debug1", "warning", True, False),
     ("notice", "debug1", False, True)],
)  # fmt: skip
def test_the_scan_line_goes_where_postgres_shows_it_and_nowhere_else(
    reported, client, log, to_client, to_log
):
    # The backend's pid marks its lines in the shared server log.
    with psycopg.connect(reported.dsn, autocommit=True) as conn:
        notices = []
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary))
        conn.execute(f"SET client_min_messages = {client}")
        conn.execute(f"SET log_min_messages = {log}")
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        rows = conn.execute("SELECT username FROM reports.users WHERE username = 'user001'")
        assert rows.fetchall() == [("user001",)]
        conn.execute("RESET log_min_messages")
    lines = [line for line in reported.log().splitlines() if f"[{pid}]" in line]
    assert any(n.startswith("cognito_fdw: 1 requests") for n in notices) is to_client
    assert any("cognito_fdw: 1 requests" in line for line in lines) is to_log
