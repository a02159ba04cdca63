"""The dev stack behind ``make dev`` / ``make down`` (``cognito-fdw dev up|down``).

With a working Docker engine it is docker/compose.yaml. Without one, on a machine whose
PostgreSQL has Multicorn2, the same stack runs locally under ``.dev/``: a PostgreSQL cluster
(kept across runs), moto's server, the demo pool the compose ``seed`` service makes, and the
init SQL of the compose ``db`` service. Both servers run in their own sessions, so they
outlive ``dev up`` and ignore a Ctrl-C typed into psql; their pids are in ``.dev/state.json``
until ``dev down`` stops them.

Without either, ``dev up`` says what is missing and how to get it, and fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3

from cognito_fdw.tools.devstack import (
    LocalPostgres,
    MotoServer,
    checkout,
    free_port,
    multicorn_missing,
    postgres_bindir,
    write_private,
)
from cognito_fdw.tools.seed import ensure_pool, seed_pool

DEMO_QUERY = "SELECT * FROM cognito.users LIMIT 5"

#: The compose stack's ports, so that one DSN serves both; free ports when they are taken.
DB_PORT = 54329
MOTO_PORT = 50009

#: What the compose stack's seed service and db init script use (docker/).
POOL_NAME = "demo"
SEED_USERS = 200
REGION = "us-east-1"
DUMMY_KEYS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}

#: moto keeps everything in memory; derived ids let a restarted moto recreate the pool under
#: the id the persisted cluster's server already points at (as in docker/compose.yaml).
MOTO_ENV = {
    "MOTO_COGNITO_IDP_USER_POOL_ID_STRATEGY": "HASH",
    "MOTO_COGNITO_IDP_USER_POOL_CLIENT_ID_STRATEGY": "HASH",
}

DOCKER_HOWTO = (
    "install Docker Engine with the compose plugin (https://docs.docker.com/engine/install/), "
    "start it, and check that `docker info` and `docker compose version` work for your user"
)
LOCAL_HOWTO = (
    "apt-get install postgresql-15 postgresql-server-dev-15 python3-dev build-essential, then "
    "build and install Multicorn2 3.2 against it as its README says ('Building Multicorn2 "
    "against pre-built Postgres', https://github.com/pgsql-io/multicorn2), and run make dev "
    "with a Python of the minor version multicorn.so embeds"
)


class DevError(Exception):
    """Something the user must fix; the message says what."""


# -- which stack ---------------------------------------------------------------------------


def docker_missing() -> str | None:
    """Why the compose stack cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "no `docker` command on PATH"
    for argv in (["docker", "info"], ["docker", "compose", "version"]):
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(argv)}` did not answer within 30 s"
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            why = lines[-1] if lines else f"exit status {result.returncode}"
            return f"`{' '.join(argv)}` failed: {why}"
    return None


def nothing_available(docker_reason: str, local_reason: str) -> str:
    return (
        "make dev needs a Docker engine or a local PostgreSQL with Multicorn2; "
        "this machine has neither.\n"
        f"  Docker: {docker_reason}\n"
        f"    to get it: {DOCKER_HOWTO}\n"
        f"  Local PostgreSQL + Multicorn2: {local_reason}\n"
        f"    to get it: {LOCAL_HOWTO}"
    )


def choose_mode(mode: str) -> str:
    """``docker`` or ``local``; ``auto`` prefers Docker, as the README promises."""
    docker_reason = docker_missing() if mode in ("auto", "docker") else None
    if mode == "docker" or (mode == "auto" and docker_reason is None):
        if docker_reason:
            raise DevError(f"Docker is not usable: {docker_reason}\n  to get it: {DOCKER_HOWTO}")
        return "docker"
    local_reason = multicorn_missing(postgres_bindir())
    if local_reason is None:
        return "local"
    if mode == "local":
        raise DevError(
            f"no local PostgreSQL with Multicorn2: {local_reason}\n  to get it: {LOCAL_HOWTO}"
        )
    raise DevError(nothing_available(docker_reason or "", local_reason))


# -- the compose stack ---------------------------------------------------------------------


def compose_file() -> Path:
    return checkout() / "docker" / "compose.yaml"


def _compose(*args: str) -> list[str]:
    return ["docker", "compose", "-f", str(compose_file()), *args]


def docker_up(base: Path, psql: bool) -> int:
    password, passfile = docker_password(base)
    # The compose file reads it when it initialises the volume (POSTGRES_PASSWORD); a volume
    # made before keeps its own, so the role is given this one below as well.
    env = {**os.environ, "POSTGRES_PASSWORD": password}
    subprocess.run(_compose("up", "-d", "--build", "--wait"), check=True, env=env)
    db_psql = _compose("exec", "db", "psql", "-U", "postgres", "-d", "postgres")
    # On stdin, never in an argument list (ps shows those); with statement logging off.
    subprocess.run(
        [*_compose("exec", "-T", "db", "psql", "-U", "postgres", "-d", "postgres"),
         "-q", "-v", "ON_ERROR_STOP=1"],
        input="SET log_statement = 'none'; SET log_min_error_statement = panic;\n"
        f"ALTER ROLE postgres PASSWORD '{password}';\n",
        text=True, check=True, env=env,
    )  # fmt: skip
    subprocess.run([*db_psql, "-c", DEMO_QUERY], check=True)
    print(f"\nThe stack runs until `make down`; psql from the host: {docker_dsn(passfile)}")
    if psql:
        os.execvp(db_psql[0], db_psql)
    return 0


def docker_password(base: Path) -> tuple[str, Path]:
    """The compose database's superuser password, made once per ``base`` and kept in
    ``<base>/docker.pgpass`` (mode 0600): the published port answers every local user, the
    password only its owner.  The password and the pgpass file's path."""
    passfile = base / "docker.pgpass"
    if passfile.exists():
        return passfile.read_text().strip().rsplit(":", 1)[1], passfile
    base.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(24)  # hex: nothing to escape in SQL or a pgpass line
    write_private(passfile, f"127.0.0.1:*:*:postgres:{password}\n")
    return password, passfile


def docker_dsn(passfile: Path) -> str:
    port = os.environ.get("COGNITO_FDW_DB_PORT", str(DB_PORT))
    return f"postgresql://postgres@127.0.0.1:{port}/postgres?passfile={passfile}"


# -- the local stack -----------------------------------------------------------------------


@dataclass
class State:
    """What ``dev up`` started, kept in ``<base>/state.json`` for ``dev down``."""

    db_port: int
    moto_port: int
    postgres_pid: int | None = None
    moto_pid: int | None = None

    @classmethod
    def load(cls, path: Path) -> State | None:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n")


def _running(pid: int | None, marker: str) -> bool:
    """Whether ``pid`` is alive and still the process we started (its command line holds
    ``marker``), not a zombie or a stranger that reused the pid."""
    if not pid:
        return False
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return False
    zombie = any(line.startswith("State:\tZ") for line in status.splitlines())
    return not zombie and marker in cmdline


def _stop(pid: int | None, marker: str, sig: signal.Signals, name: str) -> None:
    if not _running(pid, marker):
        return
    os.kill(pid, sig)
    deadline = time.monotonic() + 30
    while _running(pid, marker):
        if time.monotonic() > deadline:
            print(f"{name} (pid {pid}) did not stop in 30 s; killing it", file=sys.stderr)
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
        time.sleep(0.05)


def _port(preferred: int, previous: int | None) -> int:
    for port in (previous, preferred):
        if port and _port_free(port):
            return port
    return free_port()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _prepare_base(base: Path) -> None:
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return
    # As root, PostgreSQL runs as an unprivileged user (devstack), which must reach base/pg.
    base.chmod(0o755)
    closed = [p for p in base.parents if not p.stat().st_mode & 0o001]
    if closed:
        raise DevError(
            f"PostgreSQL will run as an unprivileged user, which cannot enter {closed[0]}; "
            f"run make dev from a directory it can reach, or chmod o+x {closed[0]}"
        )


def _say(text: str) -> None:
    print(f"cognito-fdw dev: {text}", file=sys.stderr, flush=True)


def local_up(base: Path, psql: bool) -> int:
    pg_base = base / "pg"
    if (pg_base / "data").exists() and not (pg_base / "pgpass").exists():
        raise DevError(
            f"the cluster in {pg_base / 'data'} was made by an older cognito-fdw, open to every "
            f"local user (trust authentication); delete {base} to make a private one"
        )
    _prepare_base(base)
    state_path = base / "state.json"
    state = State.load(state_path)
    data_marker = str(pg_base / "data")

    if state and _running(state.moto_pid, "moto_server"):
        moto_port, moto_pid = state.moto_port, state.moto_pid
        _say(f"moto already running on port {moto_port}")
    else:
        moto = MotoServer(
            port=_port(MOTO_PORT, state and state.moto_port),
            env=MOTO_ENV,
            detached=True,
            log_path=base / "moto.log",
        ).start()
        moto_port, moto_pid = moto.port, moto.process.pid
        _say(f"moto started on port {moto_port}")
    State(state.db_port if state else 0, moto_port, state and state.postgres_pid, moto_pid).save(
        state_path
    )

    endpoint = f"http://127.0.0.1:{moto_port}"
    client = boto3.client("cognito-idp", region_name=REGION, endpoint_url=endpoint, **DUMMY_KEYS)
    pool_id = ensure_pool(client, POOL_NAME)
    summary = seed_pool(client, pool_id, users=SEED_USERS, groups=True)
    _say(f"pool {POOL_NAME} ({pool_id}): {summary}")

    if state and _running(state.postgres_pid, data_marker):
        pg = LocalPostgres(base=pg_base, port=state.db_port, private=True)
        postgres_pid = state.postgres_pid
        _say(f"PostgreSQL already running on port {pg.port}")
    else:
        pg = LocalPostgres(
            base=pg_base, port=_port(DB_PORT, state and state.db_port), detached=True, private=True
        ).start()
        postgres_pid = pg.process.pid
        _say(f"PostgreSQL started on port {pg.port} (log: {pg.log_path})")
    State(pg.port, moto_port, postgres_pid, moto_pid).save(state_path)

    # Over loopback TCP with the password in the stack's pgpass file (as root too: the
    # server's socket belongs to its own OS user).
    dsn = pg.url
    psql_bin = str(pg.bindir / "psql")
    init = [
        psql_bin, dsn, "-q", "-v", "ON_ERROR_STOP=1",
        "-v", f"region={REGION}", "-v", f"user_pool_id={pool_id}",
        "-v", f"endpoint_url={endpoint}",
        "-v", f"aws_access_key_id={DUMMY_KEYS['aws_access_key_id']}",
        "-v", f"aws_secret_access_key={DUMMY_KEYS['aws_secret_access_key']}",
        "-f", str(checkout() / "sql" / "cognito_fdw.sql"),
    ]  # fmt: skip
    # Without this, a rerun prints a NOTICE for every object that already exists.
    quiet = {**os.environ, "PGOPTIONS": "-c client_min_messages=warning"}
    subprocess.run(init, check=True, env=quiet)
    # The init SQL leaves an existing server as it is; a persisted cluster's server may point
    # at the port moto had last time.
    repoint = (
        "ALTER SERVER cognito_server OPTIONS "
        f"(SET endpoint_url '{endpoint}', SET user_pool_id '{pool_id}')"
    )
    subprocess.run([psql_bin, dsn, "-q", "-v", "ON_ERROR_STOP=1", "-c", repoint], check=True)
    subprocess.run([psql_bin, dsn, "-c", DEMO_QUERY], check=True)
    print(f"\nThe stack runs until `make down`. psql {shlex.quote(dsn)}", flush=True)
    if psql:
        os.execv(psql_bin, [psql_bin, dsn])
    return 0


def local_down(base: Path) -> bool:
    """Stop what ``local_up`` started; whether there was anything to stop."""
    state_path = base / "state.json"
    state = State.load(state_path)
    if state is None:
        return False
    # SIGINT is PostgreSQL's fast shutdown: open psql sessions are closed, not waited for.
    _stop(state.postgres_pid, str(base / "pg" / "data"), signal.SIGINT, "PostgreSQL")
    _stop(state.moto_pid, "moto_server", signal.SIGTERM, "moto")
    # Ports are kept so the next run gets the same ones; the pids are gone.
    State(state.db_port, state.moto_port).save(state_path)
    _say(f"stopped the local stack under {base} (its database is kept; delete {base} to drop it)")
    return True


# -- entry points --------------------------------------------------------------------------


def up(base: Path, mode: str = "auto", psql: bool = True) -> int:
    checkout()  # before anything starts: both stacks need the repository's sql/ or docker/
    chosen = choose_mode(mode)
    _say(f"starting the {'compose' if chosen == 'docker' else 'local'} stack")
    if chosen == "docker":
        return docker_up(base, psql)
    return local_up(base, psql)


def down(base: Path) -> int:
    stopped = local_down(base)
    if docker_missing() is None:
        subprocess.run(_compose("down"), check=True)
        stopped = True
    if not stopped:
        _say("nothing to stop")
    return 0
