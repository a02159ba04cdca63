"""What this machine has for the dev stack and the real-server tests: a checkout of the
repository, a local PostgreSQL, Multicorn2 in it and the Python that Multicorn2 embeds, and the
OS user a cluster started by root runs as.

Standard library only: ``make dev``'s preflight imports it before any package is installed.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

#: The directory that holds the ``cognito_fdw`` package these tools run from: a checkout's
#: root, or site-packages when installed.  The server's Python needs it on its path.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]

#: Files that only a checkout of the repository has (the dev stack and the tests use them).
_CHECKOUT_MARKERS = ("sql/cognito_fdw.sql", "docker/compose.yaml")


class NotACheckout(RuntimeError):
    """The repository's files are needed and this is not a checkout of it; says what to do."""


def checkout() -> Path:
    """The root of the cognito-fdw repository checkout: the directory holding this package
    when it is one (an editable install, or running from the source tree), else the current
    directory or one of its parents.  Raises :class:`NotACheckout` when neither is."""
    here = Path.cwd().resolve()
    for candidate in (PACKAGE_PARENT, here, *here.parents):
        if all((candidate / marker).is_file() for marker in _CHECKOUT_MARKERS):
            return candidate
    files = " and ".join(_CHECKOUT_MARKERS)
    raise NotACheckout(
        f"this needs a checkout of the cognito-fdw repository (its {files}), and neither "
        f"{PACKAGE_PARENT} (where cognito_fdw is installed) nor {here} is one: "
        "run it from the root of a clone (git clone <cognito-fdw repository>; cd cognito-fdw)"
    )


def postgres_bindir() -> Path | None:
    """The newest local PostgreSQL's bin directory (Debian keeps them versioned)."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def multicorn_library(bindir: Path) -> Path | None:
    """Where multicorn.so sits in the PostgreSQL of ``bindir`` (None without pg_config)."""
    pg_config = bindir / "pg_config"
    if not pg_config.exists():
        return None
    libdir = subprocess.run(
        [str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path(libdir, "multicorn.so")


def multicorn_missing(bindir: Path | None) -> str | None:
    """Why the real-server tier cannot run here, or None when it can."""
    if bindir is None:
        return "no local PostgreSQL server (apt-get install postgresql-15)"
    library = multicorn_library(bindir)
    if library is None:
        return f"{bindir / 'pg_config'} is missing (apt-get install postgresql-server-dev-15)"
    if not library.exists():
        return (
            f"Multicorn2 is not installed in the local PostgreSQL ({library} is "
            "missing): build it per its README, 'Building Multicorn2 against pre-built Postgres'"
        )
    embedded = embedded_python(library)
    mine = f"{sys.version_info.major}.{sys.version_info.minor}"
    if embedded and embedded != mine:
        # The server imports boto3 from this interpreter's site-packages (server_pythonpath).
        return (
            f"multicorn.so embeds Python {embedded}, and this is Python {mine} ({sys.executable})"
        )
    return None


def embedded_python(library: Path) -> str | None:
    out = subprocess.run(["ldd", str(library)], capture_output=True, text=True).stdout
    for word in out.split():
        if word.startswith("libpython"):
            return word[len("libpython") :].split(".so")[0]
    return None


def server_user() -> pwd.struct_passwd | None:
    """The OS user a cluster started by root runs as (initdb refuses root); None if not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root, and no unprivileged user to run PostgreSQL as")
