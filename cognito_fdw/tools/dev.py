"""The dev stack behind ``make dev`` / ``make down`` (``cognito-fdw dev up|down``).

With a working Docker engine it is docker/compose.yaml (:mod:`cognito_fdw.tools.devdocker`).
Without one, on a machine whose PostgreSQL has Multicorn2, the same stack runs locally under
``.dev/``: a PostgreSQL cluster (kept across runs), moto's server (the one installed beside
this Python, not whichever is on PATH), the demo pool the compose ``seed`` service makes, and
the init SQL of the compose ``db`` service. Both servers run in their own sessions, so they
outlive ``dev up`` and ignore a Ctrl-C typed into psql; their ports and pids are in
``.dev/state.json`` until ``dev down`` stops them.

``dev up`` says each step on stderr as it starts it, and when a step fails it stops the
servers this run started and says which step failed and where the logs are.  It ends with
the URL to use later, read from the running stack, so a rerun prints it again.

Without either stack, ``dev up`` says what is missing and how to get it, and fails
(:mod:`cognito_fdw.tools.preflight`, which ``make dev`` runs before installing anything).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import boto3

from cognito_fdw.tools import devdocker
from cognito_fdw.tools.devconfig import (
    DB_PORT,
    DB_PORT_VARIABLE,
    DEMO_QUERY,
    MOTO_PORT,
    MOTO_PORT_VARIABLE,
    PREVIEW,
    choose_port,
    preferred_port,
    say,
)
from cognito_fdw.tools.devstack import LocalPostgres, MotoServer
from cognito_fdw.tools.host import checkout
from cognito_fdw.tools.preflight import DevError, choose_mode, describe, docker_missing
from cognito_fdw.tools.seed import TextProgress, ensure_pool, seed_pool

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
#: Seeds moto's random generator before the pool is made, so that a fresh moto gives the demo
#: users the same subs again (seed.ensure_pool); docker/compose.yaml's seed service passes it.
MOTO_RANDOM_SEED = 1


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


def _failure(error: BaseException) -> str:
    if isinstance(error, subprocess.CalledProcessError):
        command = Path(str(error.cmd[0])).name
        return f"{command} exited with status {error.returncode} (its messages are above)"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return f"{type(error).__name__}: {error}"


class _Run:
    """The steps of one ``local_up``: says each as it starts, remembers the servers it
    started, and on a failure stops those and says which step failed."""

    def __init__(self, base: Path):
        self.base = base
        self.step = "starting"
        self.started: list[tuple[str, int, str, signal.Signals]] = []

    def __call__(self, step: str, text: str) -> None:
        self.step = step
        say(text)

    def fail(self, error: BaseException) -> DevError:
        for name, pid, marker, sig in reversed(self.started):
            _stop(pid, marker, sig, name)
        stopped = (
            f"stopped what this run had started ({', '.join(n for n, *_ in self.started)})"
            if self.started
            else "nothing was left running by this run"
        )
        return DevError(
            f"failed while {self.step}: {_failure(error)}\n  {stopped}; logs: "
            f"{self.base / 'moto.log'}, {self.base / 'pg' / 'server.log'}"
        )


def local_up(base: Path, psql: bool) -> int:
    pg_base = base / "pg"
    if (pg_base / "data").exists() and not (pg_base / "pgpass").exists():
        raise DevError(
            f"the cluster in {pg_base / 'data'} was made by an older cognito-fdw, open to every "
            f"local user (trust authentication); delete {base} to make a private one"
        )
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        base.chmod(0o755)  # PostgreSQL runs as an unprivileged user, which must reach base/pg
    run = _Run(base)
    try:
        pg, endpoint, pool_id = _start(base, run)
        _init(pg, endpoint, pool_id, run)
    except (Exception, KeyboardInterrupt) as error:
        raise run.fail(error) from error
    say(f"ready: PostgreSQL on 127.0.0.1:{pg.port}, moto on {endpoint}; it runs until make down")
    url = shlex.quote(pg.url)
    print(f"\nThe stack runs until `make down`. psql {url}", flush=True)
    if psql:
        psql_bin = str(pg.bindir / "psql")
        os.execv(psql_bin, [psql_bin, pg.url])
    return 0


def _start(base: Path, run: _Run) -> tuple[LocalPostgres, str, str]:
    """moto (seeded) and PostgreSQL, started unless they run already."""
    state_path = base / "state.json"
    state = State.load(state_path)
    pg_base = base / "pg"
    data_marker = str(pg_base / "data")

    if state and _running(state.moto_pid, MotoServer.MARKER):
        moto_port, moto_pid = state.moto_port, state.moto_pid
        run("starting moto", f"moto: already running on port {moto_port}")
    else:
        run("starting moto", f"moto: starting (log: {base / 'moto.log'})")
        moto = MotoServer(
            port=choose_port(
                preferred_port(MOTO_PORT_VARIABLE, MOTO_PORT),
                state and state.moto_port,
                "moto",
                "cognito_server is pointed there",
            ),
            env=MOTO_ENV,
            detached=True,
            log_path=base / "moto.log",
        ).start()
        moto_port, moto_pid = moto.port, moto.process.pid
        run.started.append(("moto", moto_pid, MotoServer.MARKER, signal.SIGTERM))
        say(f"moto: started on port {moto_port}")
    db_port = state.db_port if state else 0
    State(db_port, moto_port, state and state.postgres_pid, moto_pid).save(state_path)

    endpoint = f"http://127.0.0.1:{moto_port}"
    client = boto3.client("cognito-idp", region_name=REGION, endpoint_url=endpoint, **DUMMY_KEYS)
    run("seeding", f"seed: pool {POOL_NAME!r}, {SEED_USERS} users and their groups")
    pool_id = ensure_pool(client, POOL_NAME, moto_random_seed=MOTO_RANDOM_SEED)
    summary = seed_pool(
        client, pool_id, users=SEED_USERS, groups=True, progress=TextProgress(sys.stderr, "users")
    )
    say(f"seed: {summary}")

    if state and _running(state.postgres_pid, data_marker):
        pg = LocalPostgres(base=pg_base, port=state.db_port, private=True)
        postgres_pid = state.postgres_pid
        run("starting PostgreSQL", f"PostgreSQL: already running on port {pg.port}")
    else:
        fresh = not (pg_base / "data").exists()
        run(
            "starting PostgreSQL",
            f"PostgreSQL: {'creating a cluster in' if fresh else 'starting the cluster in'} "
            f"{pg_base} (log: {pg_base / 'server.log'})",
        )
        pg = LocalPostgres(
            base=pg_base,
            port=choose_port(
                preferred_port(DB_PORT_VARIABLE, DB_PORT),
                state and state.db_port,
                "PostgreSQL",
                "use the URL printed at the end",
            ),
            detached=True,
            private=True,
        ).start()
        postgres_pid = pg.process.pid
        run.started.append(("PostgreSQL", postgres_pid, data_marker, signal.SIGINT))
        say(f"PostgreSQL: started on port {pg.port}")
    State(pg.port, moto_port, postgres_pid, moto_pid).save(state_path)
    return pg, endpoint, pool_id


def _init(pg: LocalPostgres, endpoint: str, pool_id: str, run: _Run) -> None:
    """sql/cognito_fdw.sql, the server repointed at this moto, and the preview query."""
    # Over loopback TCP with the password in the stack's pgpass file (as root too: the
    # server's socket belongs to its own OS user).  -X: the user's ~/.psqlrc stays out.
    psql = [str(pg.bindir / "psql"), pg.url, "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    script = checkout() / "sql" / "cognito_fdw.sql"
    run("running sql/cognito_fdw.sql", f"init: {script} (the extension, server, cognito.users)")
    init = [
        *psql, "-v", f"region={REGION}", "-v", f"user_pool_id={pool_id}",
        "-v", f"endpoint_url={endpoint}",
        "-v", f"aws_access_key_id={DUMMY_KEYS['aws_access_key_id']}",
        "-v", f"aws_secret_access_key={DUMMY_KEYS['aws_secret_access_key']}",
        "-f", str(script),
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
    subprocess.run([*psql, "-c", repoint], check=True)
    run("running the preview query", f"preview: {DEMO_QUERY}")
    subprocess.run([*psql[:3], *PREVIEW], check=True)


def local_down(base: Path) -> bool:
    """Stop what ``local_up`` started; whether there was anything to stop."""
    state_path = base / "state.json"
    state = State.load(state_path)
    if state is None:
        return False
    # SIGINT is PostgreSQL's fast shutdown: open psql sessions are closed, not waited for.
    _stop(state.postgres_pid, str(base / "pg" / "data"), signal.SIGINT, "PostgreSQL")
    _stop(state.moto_pid, MotoServer.MARKER, signal.SIGTERM, "moto")
    # Ports are kept so the next run gets the same ones; the pids are gone.
    State(state.db_port, state.moto_port).save(state_path)
    say(f"stopped the local stack under {base} (its database is kept; delete {base} to drop it)")
    return True


# -- entry points --------------------------------------------------------------------------


def up(base: Path, mode: str = "auto", psql: bool = True) -> int:
    checkout()  # before anything starts: both stacks need the repository's sql/ or docker/
    chosen = choose_mode(mode, base)
    say(f"starting {describe(chosen, base)}")
    if chosen == "docker":
        return devdocker.up(base, psql)
    return local_up(base, psql)


def down(base: Path) -> int:
    stopped = local_down(base)
    if docker_missing() is None:
        devdocker.down()
        stopped = True
    if not stopped:
        say("nothing to stop")
    return 0
