"""Tier 2: a real PostgreSQL with real Multicorn2, and moto's Cognito server over HTTP.

Without Multicorn2 in the local PostgreSQL every test here is skipped with one reason;
with a Docker engine instead, the server runs in a container built from docker/Dockerfile.
"""

from __future__ import annotations

import contextlib
import os
import re

import boto3
import psycopg
import pytest

from cognito_fdw.tools.devstack import LocalPostgres, MotoServer
from cognito_fdw.tools.host import multicorn_missing, postgres_bindir

from .dockerpg import DockerPostgres, docker_available
from .faultproxy import FaultProxy
from .reliability import Recorder
from .seeddata import POOL_REGION, seed_test_pool

_MISSING = multicorn_missing(postgres_bindir())
_USE_DOCKER = _MISSING is not None and docker_available()
SKIP_REASON = (
    f"tier 2 (real server) skipped: {_MISSING}; or run with a Docker engine for testcontainers"
)


_SKIPPED: list = []


def pytest_collection_modifyitems(config, items):
    # Without a server, the server tests are set aside at collection (before any fixture
    # could try to start one) and reported once, in one line, at the end.
    if _MISSING is None or _USE_DOCKER:
        return
    here = os.path.dirname(__file__)
    _SKIPPED.extend(
        item for item in items
        if str(item.path).startswith(here) and not item.get_closest_marker("emulator_only")
    )  # fmt: skip
    if _SKIPPED:
        config.hook.pytest_deselected(items=_SKIPPED)
        items[:] = [item for item in items if item not in _SKIPPED]


def pytest_terminal_summary(terminalreporter):
    if _SKIPPED:
        terminalreporter.write_line(f"SKIPPED {len(_SKIPPED)} tests: {SKIP_REASON}")


def pytest_report_header(config):
    if _MISSING is None:
        return "tier 2: local PostgreSQL with Multicorn2"
    return "tier 2: Docker (testcontainers)" if _USE_DOCKER else SKIP_REASON


@pytest.fixture(scope="session")
def moto():
    server = MotoServer(host="0.0.0.0" if _USE_DOCKER else "127.0.0.1").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(moto):
    """A fault-injecting proxy in front of the emulator, one per test module."""
    proxy = FaultProxy(moto.url).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def cognito(moto):
    return boto3.client(
        "cognito-idp",
        region_name=POOL_REGION,
        endpoint_url=moto.url,
        aws_access_key_id="AKIDTESTING",
        aws_secret_access_key="testing-secret",
    )


@pytest.fixture(scope="session")
def pool(cognito):
    """A pool of 150 varied users (three pages), and the users as Cognito lists them."""
    return seed_test_pool(cognito)


@pytest.fixture(scope="session")
def server(moto, tmp_path_factory):
    """The running PostgreSQL (started in the Asia/Kolkata zone, to catch local-time bugs)."""
    env = {"TZ": "Asia/Kolkata"}
    pg = DockerPostgres(env) if _USE_DOCKER else LocalPostgres(env=env)
    pg.start()
    pg.endpoint = moto.url if not _USE_DOCKER else pg.host_url(moto.port)
    yield pg
    log = pg.log()
    pg.cleanup()
    crashes = re.findall(r".*(?:terminated by signal|PANIC|server process .* exited).*", log)
    assert not crashes, "a backend crashed during the tests:\n" + "\n".join(crashes)


def _sql(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


TEST_KEYS = "aws_access_key_id 'AKIDTESTING', aws_secret_access_key 'testing-secret'"


def create_server(conn, name: str, pool_id: str, endpoint: str, keys: bool = True, **options):
    """A cognito_fdw server on the emulator; the test keys in a PUBLIC user mapping."""
    extra = "".join(f", {key} {_sql(str(value))}" for key, value in options.items())
    conn.execute(
        f"CREATE SERVER {name} FOREIGN DATA WRAPPER multicorn OPTIONS ("
        f"wrapper 'cognito_fdw.CognitoFdw', user_pool_id {_sql(pool_id)}, "
        f"endpoint_url {_sql(endpoint)}{extra})"
    )
    if keys:
        conn.execute(f"CREATE USER MAPPING FOR PUBLIC SERVER {name} OPTIONS ({TEST_KEYS})")


@pytest.fixture(scope="session")
def setup(server, pool):
    """Extension, server and user mapping; returns the endpoint and pool id."""
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS multicorn")
        create_server(conn, "cognito_server", pool.pool_id, server.endpoint, region=POOL_REGION)
        conn.execute("CREATE SCHEMA cognito")
    return server


@pytest.fixture
def db(setup):
    """A connection that collects the wrapper's DEBUG accounting lines."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        conn.notices = []
        # A Diagnostic is valid only inside the callback: keep its text.
        conn.add_notice_handler(lambda diag: conn.notices.append(diag.message_primary or ""))
        yield conn


def requests_of(conn) -> list[int]:
    """Requests per scan, from the DEBUG lines of the statements run since the last call."""
    counts = [
        int(m.group(1))
        for text in conn.notices
        if (m := re.match(r"cognito_fdw: (\d+) requests", text))
    ]
    conn.notices.clear()
    return counts


@contextlib.contextmanager
def counting(conn):
    """Within the block, the wrapper reports each scan's requests at DEBUG1."""
    conn.execute("SET client_min_messages = debug1")
    requests_of(conn)
    try:
        yield
    finally:
        conn.execute("RESET client_min_messages")


_RECORDER = Recorder()


def record(area: str, case: str, observed: str) -> None:
    """Note what the wrapper did in a reliability case, for RELIABILITY.md."""
    _RECORDER.add(area, case, observed, os.environ.get("PYTEST_CURRENT_TEST", ""))


def pytest_runtest_logreport(report):
    if report.when == "call":
        _RECORDER.outcome(report.nodeid, report.outcome)


def pytest_sessionfinish(session, exitstatus):
    target = os.environ.get("COGNITO_FDW_RELIABILITY_REPORT")
    if target:
        _RECORDER.write(target)
    attacks = os.environ.get("COGNITO_FDW_SECURITY_REPORT")
    if attacks:
        _RECORDER.write_attacks(attacks)
