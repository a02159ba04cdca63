"""Which dev stack ``make dev`` can run here, decided before anything is installed.

``make dev`` runs ``python3 -m cognito_fdw.tools.preflight`` from the checkout, with the
Python that is about to make ``.venv``, before making it: so this module (and
:mod:`cognito_fdw.tools.host`, which it asks) uses the standard library alone.  It prints the
stack it chose, or what is missing and how to get it, and exits 1 then, so that a machine
that cannot run the stack learns it in a second rather than after installing packages.

``cognito-fdw dev up`` asks the same questions again (:func:`choose_mode`), for a run
without make.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from cognito_fdw.tools.host import (
    embedded_python,
    multicorn_library,
    multicorn_missing,
    postgres_bindir,
    server_user,
)

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


def local_missing() -> str | None:
    """Why the local stack cannot run here (no PostgreSQL, no Multicorn2, or a Python of
    another minor version than the one multicorn.so embeds), or None when it can."""
    bindir = postgres_bindir()
    reason = multicorn_missing(bindir)
    if reason is None or bindir is None:
        return reason
    library = multicorn_library(bindir)
    embedded = embedded_python(library) if library else None
    if embedded and embedded != f"{sys.version_info.major}.{sys.version_info.minor}":
        # The server imports boto3 from .venv, so .venv must be made by that minor version.
        return f"{reason}: run make dev PYTHON=python{embedded} (or its full path)"
    return reason


def unreachable(base: Path) -> str | None:
    """As root, the local cluster runs as an unprivileged OS user (initdb refuses root),
    which must enter every directory down to ``base``; what to do when it cannot, else None.
    """
    user = server_user()
    if user is None:
        return None
    base = base.resolve()
    for directory in reversed([base, *base.parents]):
        if not directory.exists():
            break
        probe = subprocess.run(
            ["test", "-x", str(directory)], user=user.pw_uid, group=user.pw_gid, extra_groups=[]
        )
        if probe.returncode != 0:
            return (
                f"the local stack runs PostgreSQL as the OS user {user.pw_name!r} (initdb "
                f"refuses to run as root), and {user.pw_name} cannot enter {directory}, on the "
                f"way to {base}. Clone the repository where every user can enter (for example "
                f"/srv/cognito-fdw) and run make dev there, or let others pass through: "
                f"chmod o+x {directory} (they can enter it, not list it)"
            )
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


def choose_mode(mode: str, base: Path) -> str:
    """``docker`` or ``local`` for ``mode`` (``auto``, ``docker`` or ``local``); ``auto``
    prefers Docker, as the README promises.  :class:`DevError` says why neither can run."""
    docker_reason = docker_missing() if mode in ("auto", "docker") else None
    if mode == "docker" or (mode == "auto" and docker_reason is None):
        if docker_reason:
            raise DevError(f"Docker is not usable: {docker_reason}\n  to get it: {DOCKER_HOWTO}")
        return "docker"
    local_reason = local_missing()
    if local_reason is None:
        closed = unreachable(base)
        if closed:
            raise DevError(closed)
        return "local"
    if mode == "local":
        raise DevError(
            f"no local PostgreSQL with Multicorn2: {local_reason}\n  to get it: {LOCAL_HOWTO}"
        )
    raise DevError(nothing_available(docker_reason or "", local_reason))


def describe(mode: str, base: Path) -> str:
    if mode == "docker":
        return "the compose stack (docker/compose.yaml: moto, the seed, PostgreSQL 17)"
    return f"the local stack (this machine's PostgreSQL with Multicorn2, moto) in {base}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m cognito_fdw.tools.preflight",
        description="Say which dev stack make dev will run, or what is missing (exit 1).",
    )
    parser.add_argument("--mode", choices=("auto", "docker", "local"), default="auto")
    parser.add_argument("--base", default=".dev", help="the local stack's directory (.dev)")
    args = parser.parse_args(argv)
    try:
        mode = choose_mode(args.mode, Path(args.base))
    except DevError as error:
        print(f"make dev: {error}\nmake dev: nothing was installed.", file=sys.stderr)
        return 1
    print(f"make dev: checked: {describe(mode, Path(args.base))} can run here", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
