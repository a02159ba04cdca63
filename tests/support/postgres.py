"""The tests' PostgreSQL: SQL for wrapper servers, psql, the README's install, crash signs,
and the server in a container built from docker/Dockerfile when there is no local Multicorn2.

The container carries Multicorn2 and this checkout's cognito_fdw; the emulator stays on the
host and the container reaches it through the host gateway.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid

from psycopg import sql

from cognito_fdw.tools.host import checkout

#: The repository's psql scripts (guard.sql, vault.sql, sync.sql, cognito_fdw.sql).
SCRIPTS = checkout() / "sql"

#: The emulator's keys, in the PUBLIC user mapping :func:`create_server` makes.
TEST_KEYS = {"aws_access_key_id": "AKIDTESTING", "aws_secret_access_key": "testing-secret"}

#: What a crashed or corrupted backend leaves in the server log.
DAMAGE = re.compile(
    r".*(?:terminated by signal|PANIC|is not owned by resource owner|cache reference leak"
    r"|server process .* exited|all server processes terminated).*"
)


def damage(log: str) -> list[str]:
    """The lines of a server log that show a crashed or corrupted backend."""
    return DAMAGE.findall(log)


def literal(value) -> str:
    """``value`` as an SQL literal (psycopg's quoting), for DDL that takes no parameters."""
    return sql.Literal(str(value)).as_string(None).strip()


def role_dsn(dsn: str, role: str) -> str:
    """``dsn`` (as the superuser postgres) as ``role`` instead."""
    return dsn.replace("user=postgres", f"user={role}")


def new_role(conn, login: bool = True) -> str:
    """A new role (``r_`` and 8 hex digits) that may log in, made on ``conn``; its name."""
    role = f"r_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role}{' LOGIN' if login else ''}")
    return role


def options_sql(options: dict) -> str:
    """The inside of ``OPTIONS (...)``: ``name 'value', ...``."""
    return ", ".join(f"{name} {literal(value)}" for name, value in options.items())


def create_server(conn, name: str, pool_id: str, endpoint: str, keys: bool = True, **options):
    """A cognito_fdw server on the emulator; the test keys in a PUBLIC user mapping.

    The shared cache is off (``cache_ttl 0``) unless ``cache_ttl`` is given (None: the
    default): a test counting the requests of a repeated query counts requests."""
    given = {
        name: value for name, value in {"cache_ttl": "0", **options}.items() if value is not None
    }
    server = {"wrapper": "cognito_fdw.CognitoFdw", "user_pool_id": pool_id,
              "endpoint_url": endpoint, **given}  # fmt: skip
    conn.execute(
        f"CREATE SERVER {name} FOREIGN DATA WRAPPER multicorn OPTIONS ({options_sql(server)})"
    )
    if keys:
        conn.execute(
            f"CREATE USER MAPPING FOR PUBLIC SERVER {name} OPTIONS ({options_sql(TEST_KEYS)})"
        )


def psql(server, *args: str) -> subprocess.CompletedProcess:
    """``psql -X -q -v ON_ERROR_STOP=1 *args`` on ``server.dsn`` (the server's own psql where
    it has a ``bindir``); statements are not logged (a script's variables may hold keys)."""
    bindir = getattr(server, "bindir", None)
    binary = str(bindir / "psql") if bindir else shutil.which("psql")
    env = {**os.environ, "PGOPTIONS": "-c log_statement=none"}
    return subprocess.run(
        [binary, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", server.dsn, *args],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip


def install_readme_setup(server, **variables: str) -> None:
    """The README's install on ``server``: sql/cognito_fdw.sql with ``variables`` (psql
    ``-v name=value``: user_pool_id, endpoint_url, keys), then sql/vault.sql with its key
    file in the cluster's directory (``server.base / "vault.keys"``)."""
    scripts = (
        ("cognito_fdw.sql", variables),
        ("vault.sql", {"vault_key_file": str(server.base / "vault.keys")}),
    )
    for script, values in scripts:
        settings = [arg for name, value in values.items() for arg in ("-v", f"{name}={value}")]
        done = psql(server, *settings, "-f", str(SCRIPTS / script))
        assert done.returncode == 0, f"sql/{script}: {done.stderr}"


def docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
    except Exception:  # noqa: BLE001 - any failure means: no usable engine
        return False
    return True


class DockerPostgres:
    def __init__(self, env: dict):
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.image import DockerImage

        self._image = DockerImage(path=str(checkout()), dockerfile_path="docker/Dockerfile")
        self._env = env
        self._container_class = DockerContainer
        self.container = None

    def start(self):
        self._image.build()
        self.container = (
            self._container_class(str(self._image))
            .with_env("POSTGRES_HOST_AUTH_METHOD", "trust")
            .with_exposed_ports(5432)
            .with_kwargs(extra_hosts={"host.docker.internal": "host-gateway"})
        )
        for key, value in self._env.items():
            self.container.with_env(key, value)
        self.container.start()
        from testcontainers.core.waiting_utils import wait_for_logs

        wait_for_logs(self.container, "database system is ready to accept connections", 120)
        return self

    @property
    def dsn(self) -> str:
        host = self.container.get_container_host_ip()
        port = self.container.get_exposed_port(5432)
        return f"host={host} port={port} user=postgres dbname=postgres"

    def host_url(self, port: int) -> str:
        return f"http://host.docker.internal:{port}"

    def log(self) -> str:
        out, err = self.container.get_logs()
        return (out + err).decode(errors="replace")

    def cleanup(self) -> None:
        self.container.stop()
