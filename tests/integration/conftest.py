"""Tier 2: a real PostgreSQL with real Multicorn2, and moto's Cognito server over HTTP.

COGNITO_FDW_TIER (tests/support/docker.py) says where the server runs: the local
PostgreSQL with Multicorn2 (``local``), or a container of docker/Dockerfile's image on a
stand-in of PostgreSQL 15 or 17 (``docker15``, ``docker17``).  Where the tier cannot run,
every test here is skipped with one line that says why.
"""

from __future__ import annotations

import os

import boto3
import psycopg
import pytest

from cognito_fdw.tools.devstack import LocalPostgres, MotoServer
from cognito_fdw.tools.host import multicorn_missing, postgres_bindir

from ..support import docker
from ..support.accounting import collect_notices
from ..support.credentials import authenticated_moto, keyed_postgres
from ..support.pool import POOL_REGION, seed_groups_pool, seed_test_pool
from ..support.postgres import STARTED, DockerPostgres, create_server, damage
from ..support.proxy import Proxy
from ..support.reliability import RECORDER

_TIER = docker.tier_name()
_DOCKER = docker.TIERS.get(_TIER)
if _DOCKER is None:
    _MISSING = multicorn_missing(postgres_bindir())
    SKIP_REASON = f"tier 2 (real server) skipped: {_MISSING}"
else:
    _MISSING = docker.tier_missing(_DOCKER)
    SKIP_REASON = f"Docker tier {_TIER} skipped: {_MISSING}"

#: What a Docker tier leaves to the local one: tests that start clusters of their own on this
#: machine (with files, keys or OS users beside them) or drive the local dev stack.
LOCAL_ONLY_FIXTURES = {"server_owner"}  # a role of its own that logs in with no password
LOCAL_ONLY_FILES = {"test_backend.py", "test_readme_path.py", "test_dev.py",
                    "test_doctor.py", "test_seed.py",
                    # a throwaway cluster a crash may restart; the gateway and its "managed"
                    # database, two clusters
                    "test_multicorn_boundary.py", "test_gateway.py",
                    # databases of their own, with roles that log in with no password
                    "test_cognito_fdw.py", "test_vault.py"}  # fmt: skip

_SKIPPED: list = []
_LOCAL_ONLY: list = []


def pytest_collection_modifyitems(config, items):
    # Without a server, the server tests are set aside at collection (before any fixture
    # could try to start one) and reported once, in one line, at the end.
    here = os.path.dirname(__file__)
    ours = [item for item in items if str(item.path).startswith(here)]
    if _DOCKER is not None:
        # A Docker tier runs tier 2 only: the unit tests ran in the local tier.
        config.hook.pytest_deselected(items=[i for i in items if i not in ours])
        items[:] = ours
        _LOCAL_ONLY.extend(
            item for item in ours
            if item.path.name in LOCAL_ONLY_FILES
            or LOCAL_ONLY_FIXTURES & set(getattr(item, "fixturenames", ()))
            or item.get_closest_marker("local_only")
        )  # fmt: skip
        config.hook.pytest_deselected(items=_LOCAL_ONLY)
        items[:] = [item for item in items if item not in _LOCAL_ONLY]
    if _MISSING is None:
        return
    _SKIPPED.extend(item for item in items if not item.get_closest_marker("emulator_only"))
    if _SKIPPED:
        config.hook.pytest_deselected(items=_SKIPPED)
        items[:] = [item for item in items if item not in _SKIPPED]


def pytest_terminal_summary(terminalreporter):
    if _SKIPPED:
        terminalreporter.write_line(f"SKIPPED {len(_SKIPPED)} tests: {SKIP_REASON}")
    elif _LOCAL_ONLY:
        terminalreporter.write_line(
            f"{_TIER}: {len(_LOCAL_ONLY)} tests left to the local tier (this machine's clusters, "
            "binaries or password-less roles)"
        )


def pytest_report_header(config):
    if _MISSING is not None:
        return SKIP_REASON
    if _DOCKER is None:
        return "tier 2: local PostgreSQL with Multicorn2"
    return f"tier 2: Docker tier {_TIER}, image {_DOCKER.image} on {_DOCKER.base} (testcontainers)"


@pytest.fixture(scope="session")
def moto():
    server = MotoServer(host=docker.serving_host()).start()
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
    pg = DockerPostgres(_DOCKER, env) if _DOCKER else LocalPostgres(env=env)
    pg.start()
    pg.endpoint = moto.url
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
def groups_pool_id(setup, cognito):
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
    server = MotoServer(host=docker.serving_host()).start()
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
    if report.failed and _DOCKER is not None:
        # A container that died (or that someone removed) fails every test after it: stop
        # the run here, with one line that says what became of it.
        for pg in list(STARTED):
            why = pg.gone()
            if why:
                pytest.exit(f"Docker tier {_TIER} stopped at {report.nodeid}: {why}", 1)


def pytest_sessionfinish(session, exitstatus):
    if _SKIPPED and exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK  # a tier that cannot run said why, in one line
    target = os.environ.get("COGNITO_FDW_RELIABILITY_REPORT")
    if target:
        RECORDER.write(target)
    attacks = os.environ.get("COGNITO_FDW_ATTACKS_REPORT")
    if attacks:
        RECORDER.write_attacks(attacks)
