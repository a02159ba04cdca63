"""Tier 2: a real PostgreSQL with real Multicorn2, and moto's Cognito server over HTTP.

Without Multicorn2 in the local PostgreSQL every test here is skipped with one reason;
with a Docker engine instead, the server runs in a container built from docker/Dockerfile.
"""

from __future__ import annotations

import os

import boto3
import psycopg
import pytest

from cognito_fdw.tools.devstack import LocalPostgres, MotoServer
from cognito_fdw.tools.host import multicorn_missing, postgres_bindir

from ..support.accounting import collect_notices
from ..support.credentials import authenticated_moto, keyed_postgres
from ..support.pool import POOL_REGION, seed_groups_pool, seed_test_pool
from ..support.postgres import DockerPostgres, create_server, damage, docker_available
from ..support.proxy import Proxy
from ..support.reliability import RECORDER

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
    proxy = Proxy(moto.url).start()
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
    crashes = damage(log)
    assert not crashes, "a backend crashed during the tests:\n" + "\n".join(crashes)


@pytest.fixture(scope="session")
def setup(server, pool):
    """Extension, server and user mapping; returns the endpoint and pool id."""
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS multicorn")
        create_server(conn, "cognito_server", pool.pool_id, server.endpoint, region=POOL_REGION)
        conn.execute("CREATE SCHEMA cognito")
    return server


@pytest.fixture(scope="session")
def gt(setup, cognito):
    """The groups pool (tests/support/pool.py) in schema gt: groups, a writable members table
    and a read-only one, on server groups_server; the pool's id."""
    pool_id = seed_groups_pool(cognito)
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        create_server(conn, "groups_server", pool_id, setup.endpoint)
        conn.execute("CREATE SCHEMA gt")
        conn.execute(
            "CREATE FOREIGN TABLE gt.groups (group_name text, description text, "
            "precedence int, role_arn text, created_at timestamptz, updated_at timestamptz) "
            "SERVER groups_server OPTIONS (object 'groups')"
        )
        conn.execute(
            "CREATE FOREIGN TABLE gt.members (group_name text, username text, "
            "membership text, email text, sub uuid) "
            "SERVER groups_server OPTIONS (object 'group_members', writable 'true')"
        )
        conn.execute(
            "CREATE FOREIGN TABLE gt.members_ro (group_name text, username text) "
            "SERVER groups_server OPTIONS (object 'group_members')"
        )
        conn.execute("CREATE TABLE gt.local_log (note text)")
    return pool_id


@pytest.fixture
def db(setup):
    """A connection that collects the wrapper's DEBUG accounting lines."""
    with psycopg.connect(setup.dsn, autocommit=True) as conn:
        collect_notices(conn)
        yield conn


@pytest.fixture(scope="session")
def aws():
    """A moto of its own with IAM authentication on (tests/support/credentials.py)."""
    server = MotoServer().start()
    yield authenticated_moto(server.url)
    server.stop()


@pytest.fixture(scope="session")
def keyed(aws):
    """A server of its own with every credential source for ``aws``, the guard and vault."""
    pg = keyed_postgres(aws)
    yield pg
    log = pg.log()
    pg.cleanup()
    crashes = damage(log)
    assert not crashes, "a backend crashed during the credential tests:\n" + "\n".join(crashes)


@pytest.fixture
def admin(keyed):
    """A superuser connection to ``keyed`` whose own statements (which hold secrets) are not
    logged."""
    with psycopg.connect(keyed.dsn, autocommit=True) as conn:
        conn.execute("SET log_statement = 'none'")
        yield conn


# What the tests record (tests/support/reliability.py), with each test's outcome, written to
# RELIABILITY.md and ATTACKS.md when `make reliability` names them.


def pytest_runtest_logreport(report):
    if report.when == "call":
        RECORDER.outcome(report.nodeid, report.outcome)


def pytest_sessionfinish(session, exitstatus):
    target = os.environ.get("COGNITO_FDW_RELIABILITY_REPORT")
    if target:
        RECORDER.write(target)
    attacks = os.environ.get("COGNITO_FDW_ATTACKS_REPORT")
    if attacks:
        RECORDER.write_attacks(attacks)
