"""The compose dev stack (docker/compose.yaml) behind ``make dev`` when a Docker engine runs.

Its ports are 54329 (PostgreSQL) and 50009 (moto) on 127.0.0.1, as the local stack's, unless
``COGNITO_FDW_DB_PORT`` / ``COGNITO_FDW_MOTO_PORT`` say otherwise; when a port is taken by
another program and the stack is not running yet, ``up`` picks a free one and says so. A
running stack keeps the ports it was started with: ``up`` reads them back from Docker
(``docker compose port``), so the URL it prints is always the one that answers; a stopped one
gets its last ports back.  Each ``up`` runs the init SQL again (idempotent), and a failure
names its step.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path

from cognito_fdw.tools.devconfig import (
    DB_PORT,
    DB_PORT_VARIABLE,
    MOTO_PORT,
    MOTO_PORT_VARIABLE,
    PREVIEW,
    choose_port,
    preferred_port,
    say,
)
from cognito_fdw.tools.devstack import write_private
from cognito_fdw.tools.host import checkout
from cognito_fdw.tools.preflight import DevError

#: The ports of the last ``up``, in the dev directory: ``make dev`` after ``make down`` gives
#: them back.
PORTS_FILE = "docker.ports"
#: docker/initdb's script inside the db container.
INIT_SCRIPT = "/docker-entrypoint-initdb.d/10-cognito-fdw.sh"

#: The published ports' variables in docker/compose.yaml, with their container ports.
PORTS = {
    "db": (DB_PORT_VARIABLE, 5432, DB_PORT),
    "cognito": (MOTO_PORT_VARIABLE, 5000, MOTO_PORT),
}


def compose_file() -> Path:
    return checkout() / "docker" / "compose.yaml"


def _compose(*args: str) -> list[str]:
    return ["docker", "compose", "-f", str(compose_file()), *args]


def published(service: str) -> int | None:
    """The host port a running ``service`` publishes, None when it does not run."""
    _, target, _ = PORTS[service]
    result = subprocess.run(
        _compose("port", service, str(target)), capture_output=True, text=True, check=False
    )
    host_port = result.stdout.strip().rpartition(":")[2]
    return int(host_port) if result.returncode == 0 and host_port.isdigit() else None


def ports_env(base: Path) -> tuple[dict[str, str], bool]:
    """The port variables for ``docker compose up`` and whether the stack runs already.

    A running stack keeps its ports (compose would recreate a container whose ports change);
    a stopped one gets the ports of its last run back (``<base>/docker.ports``) when they are
    free, so the URL stays the same after ``make down``; otherwise a taken port gives way to a
    free one, said on stderr.
    """
    previous = _saved_ports(base)
    env, running = {}, False
    for service, (variable, _, default) in PORTS.items():
        current = published(service)
        running = running or current is not None
        use = "use the URL printed at the end" if service == "db" else "the stack uses it"
        preferred = preferred_port(variable, default)
        name = f"the {service} container"
        port = current or choose_port(preferred, previous.get(service), name, use)
        env[variable] = str(port)
    return env, running


def _saved_ports(base: Path) -> dict[str, int]:
    try:
        saved = json.loads((base / PORTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in saved.items() if k in PORTS and isinstance(v, int)}


def up(base: Path, psql: bool) -> int:
    password, passfile = docker_password(base)
    ports, running = ports_env(base)
    # The compose file reads it when it initialises the volume (POSTGRES_PASSWORD); a volume
    # made before keeps its own, so the role is given this one below as well.
    env = {**os.environ, **ports, "POSTGRES_PASSWORD": password}
    db_psql = _compose("exec", "db", "psql", "-U", "postgres", "-d", "postgres")
    step = "building the image and starting the stack (docker compose up)"
    say(
        "docker compose up: building the image (the first build takes a few minutes), then "
        "moto, the seed and PostgreSQL; `docker compose -f docker/compose.yaml logs` shows them"
    )
    try:
        subprocess.run(_compose("up", "-d", "--build", "--wait"), check=True, env=env)
        saved = {service: int(ports[variable]) for service, (variable, _, _) in PORTS.items()}
        (base / PORTS_FILE).write_text(json.dumps(saved))
        # On stdin, never in an argument list (ps shows those); with statement logging off.
        step = "setting the database's password"
        say(f"{step} (kept in {passfile})")
        subprocess.run(
            [*_compose("exec", "-T", "db", "psql", "-U", "postgres", "-d", "postgres"),
             "-q", "-v", "ON_ERROR_STOP=1"],
            input="SET log_statement = 'none'; SET log_min_error_statement = panic;\n"
            f"ALTER ROLE postgres PASSWORD '{password}';\n",
            text=True, check=True, env=env,
        )  # fmt: skip
        # The init script runs by itself only on an empty volume; run again (it is
        # idempotent), it recreates what was dropped since (a foreign table, the server).
        step = "running the init SQL again (docker/initdb, sql/cognito_fdw.sql)"
        say(step)
        subprocess.run(_compose("exec", "-T", "db", INIT_SCRIPT), check=True, env=env)
        step = "querying cognito.users"
        subprocess.run([*db_psql, "-X", *PREVIEW], check=True, env=env)
    except (subprocess.CalledProcessError, KeyboardInterrupt) as error:
        what = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        what = f"{what} while {step}"
        if running:
            raise DevError(f"{what}; the stack was running before and still runs") from error
        subprocess.run(_compose("stop"), check=False, env=env)
        raise DevError(
            f"{what} (its messages are above); stopped the compose stack again "
            "(docker compose -f docker/compose.yaml logs shows what each service said)"
        ) from error
    port = published("db") or int(env[DB_PORT_VARIABLE])
    say(f"ready: PostgreSQL on 127.0.0.1:{port}; it runs until make down")
    print(f"\nThe stack runs until `make down`; psql from the host: {dsn(port, passfile)}")
    if psql:
        os.execvpe(db_psql[0], db_psql, env)
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


def dsn(port: int, passfile: Path) -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/postgres?passfile={passfile}"


def down() -> None:
    subprocess.run(_compose("down"), check=True)
