"""The tests' PostgreSQL: SQL for wrapper servers and foreign tables, EXPLAIN's lines, an
error's message (no traceback, no key), psql, the README's install, crash signs,
and the server in a container of a Docker tier's image (tests/support/docker.py).

The container carries Multicorn2 and this checkout's cognito_fdw; the emulator stays on the
host, listening on the Docker bridge's gateway, where the container reaches it.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import shutil
import subprocess
import tarfile
import time
import uuid
from pathlib import PurePosixPath

import psycopg
import pytest
from psycopg import sql

from cognito_fdw.tools.devstack import LocalPostgres
from cognito_fdw.tools.host import checkout

#: The repository's psql scripts (guard.sql, vault.sql, sync.sql, cognito_fdw.sql).
SCRIPTS = checkout() / "sql"

#: Every test role's password: a Docker tier's server asks for one over TCP (the local
#: tier's trusts loopback).  Random per run; :func:`role_dsn` keeps it.
TEST_PASSWORD = secrets.token_hex(12)
#: What makes a role one the tests log in as, in CREATE ROLE.
LOGIN = f" LOGIN PASSWORD '{TEST_PASSWORD}'"

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


def wait_ready(server, timeout: float = 60) -> None:
    """Until ``server`` accepts connections again (after a crash's recovery)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(server.dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def literal(value) -> str:
    """``value`` as an SQL literal (psycopg's quoting), for DDL that takes no parameters."""
    return sql.Literal(str(value)).as_string(None).strip()


class Database:
    """A test server's connection details, pointed at another of its databases (for psql)."""

    def __init__(self, server, dbname: str):
        from psycopg.conninfo import make_conninfo

        self.dsn = make_conninfo(server.dsn, dbname=dbname)
        self.bindir = getattr(server, "bindir", None)


def role_dsn(dsn: str, role: str) -> str:
    """``dsn`` (as the superuser postgres) as ``role`` instead."""
    return dsn.replace("user=postgres", f"user={role}")


def new_role(conn, login: bool = True) -> str:
    """A new role (``r_`` and 8 hex digits) that may log in, made on ``conn``; its name."""
    role = f"r_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE ROLE {role}{LOGIN if login else ''}")
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


def create_table(conn, name: str, columns: str, server: str = "cognito_server", **options):
    """The foreign table ``name`` (``columns`` as CREATE TABLE writes them) on ``server``."""
    conn.execute(
        f"CREATE FOREIGN TABLE {name} ({columns}) SERVER {server} OPTIONS ({options_sql(options)})"
    )


def explain_lines(conn, statement: str) -> list[str]:
    """The lines of the plan ``statement`` (an EXPLAIN, with its options) prints on ``conn``."""
    return [row[0] for row in conn.execute(statement)]


def explain_text(conn, statement: str) -> str:
    """The plan ``statement`` (an EXPLAIN) prints on ``conn``, as one text."""
    return "\n".join(explain_lines(conn, statement))


def error_of(conn, statement: str, params=None) -> psycopg.Error:
    """The error ``statement`` raises on ``conn``: the test fails if none, or if the message
    shows a Python traceback or the test keys' secret."""
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(statement, params)
    diag = caught.value.diag
    text = f"{diag.message_primary} {diag.message_detail} {diag.message_hint}"
    assert "Error in python" not in text and "Traceback" not in text
    assert TEST_KEYS["aws_secret_access_key"] not in text
    return caught.value


def message_of(conn, statement: str) -> tuple[str, str | None, str | None]:
    """The primary message, detail and hint of the error ``statement`` raises (:func:`error_of`)."""
    diag = error_of(conn, statement).diag
    return diag.message_primary, diag.message_detail, diag.message_hint


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
    file in the cluster's directory (``server.base / "vault.keys"``).  The server's cache is
    then turned off (``cache_ttl '0'``, as :func:`create_server` makes servers): the tests
    count what each statement sends."""
    scripts = (
        ("cognito_fdw.sql", variables),
        ("vault.sql", {"vault_key_file": str(server.base / "vault.keys")}),
    )
    for script, values in scripts:
        settings = [arg for name, value in values.items() for arg in ("-v", f"{name}={value}")]
        done = psql(server, *settings, "-f", str(SCRIPTS / script))
        assert done.returncode == 0, f"sql/{script}: {done.stderr}"
    done = psql(server, "-c", "ALTER SERVER cognito_server OPTIONS (ADD cache_ttl '0')")
    assert done.returncode == 0, done.stderr


def own_server(env: dict | None = None):
    """A started server of a test module's own: a local cluster, or in a Docker tier a
    container of the tier's image (tests/support/docker.py)."""
    from .docker import TIERS, tier_name

    tier = TIERS.get(tier_name())
    server = DockerPostgres(tier, env or {}) if tier else LocalPostgres(env=env)
    return server.start()


#: The Docker tier's servers started and not yet cleaned up (the tier's hook checks them).
STARTED: list = []


class DockerPostgres:
    """The server in a container of a Docker tier's image (testcontainers), on 127.0.0.1
    only, with a password (SCRAM) for every TCP login; its log is the container's.

    A container that died or was removed fails fast: every connection gives up after
    ``connect_timeout`` seconds, and :meth:`gone` says what became of it in one line."""

    #: The PostgreSQL directory inside the container (the data directory's parent), where
    #: install_readme_setup puts the vault's key file; the server reads it there.
    base = PurePosixPath("/var/lib/postgresql")

    def __init__(self, tier, env: dict):
        self.tier = tier
        self._env = env
        self.container = None
        self.port = None

    def start(self, timeout: float = 120) -> DockerPostgres:
        from testcontainers.core.container import DockerContainer

        container = (
            DockerContainer(self.tier.image)
            .with_env("POSTGRES_PASSWORD", TEST_PASSWORD)
            .with_env("POSTGRES_HOST_AUTH_METHOD", "scram-sha-256")
        )
        # A random port on 127.0.0.1 only (docker-py's (address, port)): with_bind_ports takes
        # a port alone, which Docker publishes on 0.0.0.0 and [::].
        container.ports["5432/tcp"] = ("127.0.0.1", None)
        for key, value in self._env.items():
            container.with_env(key, value)
        self.container = container.start()
        STARTED.append(self)
        self.port = int(self.container.get_exposed_port(5432))
        # The entrypoint's temporary server (which runs the init scripts) listens on the
        # socket only: a TCP login with the password reaches the real server.
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.dsn, connect_timeout=3).close()
                return self
            except psycopg.OperationalError as exc:
                self.container.get_wrapped_container().reload()
                state = self.container.get_wrapped_container().status
                if state != "running" or time.monotonic() > deadline:
                    failed = f"{self.tier.image} ({state}): {exc}"
                    raise RuntimeError(f"{failed}\n{self.log()}") from None
                time.sleep(0.3)

    @property
    def dsn(self) -> str:
        return (
            f"host=127.0.0.1 port={self.port} user=postgres password={TEST_PASSWORD} "
            "dbname=postgres connect_timeout=10"
        )

    def gone(self) -> str | None:
        """None while the container runs; else what became of it, in one line."""
        import docker.errors

        wrapped = self.container.get_wrapped_container()
        try:
            wrapped.reload()
        except docker.errors.NotFound:
            return f"the container {wrapped.short_id} of {self.tier.image} was removed"
        state = wrapped.attrs["State"]
        if state["Status"] == "running":
            return None
        last = self.log().strip().splitlines()[-1:] or ["(no log)"]
        return (f"the container {wrapped.short_id} of {self.tier.image} is {state['Status']} "
                f"(exit code {state['ExitCode']}, OOM killed: {state['OOMKilled']}); its "
                f"log ends: {last[0]}")  # fmt: skip

    def log(self) -> str:
        import docker.errors

        try:
            out, err = self.container.get_logs()
        except docker.errors.NotFound:
            raise RuntimeError(self.gone()) from None
        return (out + err).decode(errors="replace")

    def cleanup(self) -> None:
        if self in STARTED:
            STARTED.remove(self)
        why = self.gone()
        if why is None or "removed" not in why:
            self.container.stop()

    def exec(self, *argv: str) -> str:
        """``argv`` run in the container as the server's OS user; its output (it must
        succeed)."""
        code, output = self.container.get_wrapped_container().exec_run(list(argv), user="postgres")
        text = output.decode(errors="replace")
        assert code == 0, f"{argv[0]} in the container: {text}"
        return text

    def put_file(self, path: str, text: str, mode: int = 0o600) -> None:
        """A file of the server's OS user in the container (its directory made 0700)."""
        folder, name = path.rsplit("/", 1)
        self.exec("mkdir", "-p", "-m", "700", folder)
        data = text.encode()
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), mode, 999, 999
            tar.addfile(info, io.BytesIO(data))
        self.container.get_wrapped_container().put_archive(folder, archive.getvalue())


def server_file(server, path) -> tuple[int, str]:
    """The permission bits and the text of a file the server's OS user owns (in its
    container, in a Docker tier)."""
    if isinstance(server, DockerPostgres):
        output = server.exec("sh", "-c", 'stat -c %a "$1" && cat "$1"', "sh", str(path))
        mode, _, text = output.partition("\n")
        return int(mode, 8), text
    return path.stat().st_mode & 0o777, path.read_text()


def write_server_file(server, path, text: str) -> None:
    """Replace the text of a file the server's OS user owns (mode 0600 in a container; a
    local file keeps its mode)."""
    if isinstance(server, DockerPostgres):
        server.put_file(str(path), text)
    else:
        path.write_text(text)


def pg_dump(server, *args: str) -> str:
    """pg_dump's output for the server's postgres database: the server's own pg_dump (one
    older than the server refuses)."""
    if isinstance(server, DockerPostgres):
        return server.exec("pg_dump", "-U", "postgres", "-d", "postgres", *args)
    done = subprocess.run(["pg_dump", "-d", server.dsn, *args],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return done.stdout
