"""Tier 2: parallel sessions with vault credentials never break a backend (docs/multicorn.md H8).

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

import json
import os
import re
import subprocess
import threading
import time
import urllib.request
from collections import Counter

import boto3
import psycopg
import pytest

from cognito_fdw.pushdown import MAX_LOOKUPS, PARTITION_MIN_USERS
from cognito_fdw.tools.devstack import LocalPostgres, MotoServer, seed_users
from cognito_fdw.tools.host import checkout

from .seeddata import POOL_REGION

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
# What a crashed or corrupted backend leaves in the server log.
DAMAGE = re.compile(
    r".*(?:terminated by signal|PANIC|is not owned by resource owner|cache reference leak"
    r"|server process .* exited|all server processes terminated).*"
)


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _options(options: dict) -> str:
    return ", ".join(f"{k} {_lit(v)}" for k, v in options.items())


@pytest.fixture(scope="module")
def aws():
    """moto with IAM authentication on, an IAM user whose key goes in the vault, a pool."""
    server = MotoServer().start()
    setup = {"region_name": POOL_REGION, "endpoint_url": server.url,
             "aws_access_key_id": "AKIDSETUP", "aws_secret_access_key": "setup"}  # fmt: skip
    iam = boto3.client("iam", **setup)
    iam.create_user(UserName="vault")
    policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}  # fmt: skip
    iam.put_user_policy(UserName="vault", PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="vault")["AccessKey"]
    cognito = boto3.client("cognito-idp", **setup)
    pool_id = cognito.create_user_pool(PoolName="race")["UserPool"]["Id"]
    seed_users(cognito, pool_id, USERS)
    # From here on every request must be signed with a key moto issued.
    request = urllib.request.Request(
        f"{server.url}/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(request).close()
    yield {"url": server.url, "pool_id": pool_id,
           "key_id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}  # fmt: skip
    server.stop()


@pytest.fixture(scope="module")
def pg(aws):
    """A server of its own with the README's setup (sql/cognito_fdw.sql with the guard,
    sql/vault.sql), the IAM key in the vault, and two tables on it: one through a server
    that names the secret, one through a user mapping that does."""
    pg = LocalPostgres().start()
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", pg.dsn]
    env = {**os.environ, "PGOPTIONS": "-c log_statement=none"}
    subprocess.run(
        [*psql, "-v", f"user_pool_id={aws['pool_id']}", "-v", f"endpoint_url={aws['url']}",
         "-f", str(checkout() / "sql" / "cognito_fdw.sql")], check=True, env=env,
    )  # fmt: skip
    subprocess.run(
        [*psql, "-v", f"vault_key_file={pg.base / 'vault.keys'}",
         "-f", str(checkout() / "sql" / "vault.sql")], check=True, env=env,
    )  # fmt: skip
    base = {"wrapper": "cognito_fdw.CognitoFdw", "user_pool_id": aws["pool_id"],
            "endpoint_url": aws["url"], **SCAN_OPTIONS}  # fmt: skip
    vault = {"aws_access_key_id": aws["key_id"], "api_key_name": VAULT_SECRET_NAME}
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("SET log_statement = 'none'")  # the next statement holds the secret
        conn.execute("SELECT vault.create_secret(%s, %s)", (aws["secret"], VAULT_SECRET_NAME))
        conn.execute(f"CREATE ROLE {READER} LOGIN")
        conn.execute(f"GRANT USAGE ON SCHEMA vault TO {READER}")
        conn.execute(f"GRANT SELECT ON vault.decrypted_secrets TO {READER}")
        for name, server_options, mapping in (
            ("on_server", {**base, **vault}, None),
            ("in_mapping", base, vault),
        ):
            conn.execute(
                f"CREATE SERVER race_{name} FOREIGN DATA WRAPPER multicorn "
                f"OPTIONS ({_options(server_options)})"
            )
            if mapping:
                conn.execute(
                    f"CREATE USER MAPPING FOR PUBLIC SERVER race_{name} "
                    f"OPTIONS ({_options(mapping)})"
                )
            conn.execute(
                f"CREATE FOREIGN TABLE public.race_{name} (username text) "
                f"SERVER race_{name} OPTIONS (object 'users')"
            )
            conn.execute(f"GRANT USAGE ON FOREIGN SERVER race_{name} TO {READER}")
            conn.execute(f"GRANT SELECT ON public.race_{name} TO {READER}")
    yield pg
    pg.cleanup()


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
            scan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN SELECT count(*) FROM {table}"))
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
    dsns = [pg.dsn, pg.dsn.replace("user=postgres", f"user={READER}")]
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
    damage = DAMAGE.findall(pg.log()[log_before:])
    restarted = _started(pg.dsn) != started
    wrong = [a for a in answers if a[2] != a[3]]
    assert not (failures or damage or restarted or wrong), (
        f"{len(failures)} failed statements, by error: {Counter(f[2] for f in failures)}"
        f"\nthe first (seconds, session, error): {failures[:3]}"
        f"\nserver log: {damage[:6]}\npostmaster restarted: {restarted}"
        f"\nwrong answers: {wrong[:5]}"
    )
    # The race was really run: every session answered at least one full round.
    per_session = Counter(a[0] for a in answers)
    assert all(per_session[n] >= 3 for n in range(SESSIONS)), per_session
