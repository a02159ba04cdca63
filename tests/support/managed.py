"""A "managed" PostgreSQL for the gateway tests: the local server's own installation,
copied without Multicorn2, as a managed service is a PostgreSQL that cannot load it.

PostgreSQL finds its share and library directories relative to the ``postgres`` binary it
runs (a relocatable installation), so a copy of the binaries, ``share`` and ``lib`` trees
under a new root is a second installation: its ``pg_available_extensions`` lists what its own
share directory holds, and ``$libdir`` is its own lib directory.  Leaving out Multicorn2's
control file, SQL scripts, ``multicorn.so`` and its bitcode makes a server on which
``CREATE EXTENSION multicorn`` fails as on RDS, and which no ``$libdir`` path can make load it.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

from .readme_blocks import Block, blocks


def installation_dirs(bindir: Path) -> list[Path]:
    """The installation's bin, share and package-library directories (``pg_config``)."""
    asked = subprocess.run(
        [str(bindir / "pg_config"), "--bindir", "--sharedir", "--pkglibdir"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [Path(line) for line in asked.stdout.splitlines()]


def without_multicorn(bindir: Path, root: Path) -> Path:
    """A copy of the installation of ``bindir`` under ``root`` with no Multicorn2 file; the
    copy's bindir.  Readable by every OS user (the server runs as ``postgres``)."""
    ignore = shutil.ignore_patterns("multicorn*")
    for directory in installation_dirs(bindir):
        target = root / directory.relative_to(directory.anchor)
        shutil.copytree(directory, target, ignore=ignore, symlinks=True, dirs_exist_ok=True)
    for path in [root, *root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            os.chmod(path, 0o755)
    return root / bindir.relative_to(bindir.anchor)


def loaded_libraries(pid: int) -> set[str]:
    """The shared objects mapped into process ``pid`` (from /proc/<pid>/maps)."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return {line.split()[-1] for line in maps if len(line.split()) >= 6}


def cluster_pids(postmaster: int) -> list[int]:
    """The postmaster ``postmaster`` and every process it started (backends, workers)."""
    children = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
            children.append(int(entry.name))
    return [postmaster, *children]


def multicorn_loaded(postmaster: int) -> list[str]:
    """``"pid: library"`` for every process of the cluster that maps a Multicorn2 library."""
    found = []
    for pid in cluster_pids(postmaster):
        try:
            libraries = loaded_libraries(pid)
        except OSError:  # ended meanwhile
            continue
        found += [f"{pid}: {lib}" for lib in sorted(libraries) if "multicorn" in lib]
    return found


@dataclasses.dataclass(frozen=True)
class Certificates:
    """A CA and a server certificate it signed for 127.0.0.1 (the gateway's TLS)."""

    ca: str  # PEM of the CA certificate
    cert: str  # PEM of the server certificate
    key: str  # PEM of its private key


def certificates(directory: Path, host: str = "127.0.0.1") -> Certificates:
    """A throwaway CA and a server certificate naming ``host`` (an IP address), by openssl."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    key = ("-newkey", "rsa:2048", "-nodes")
    openssl("req", "-x509", *key, "-days", "2", "-subj", "/CN=cognito-fdw test CA",
            "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    openssl("req", *key, "-subj", f"/CN={host}", "-keyout", "server.key", "-out", "server.csr")
    (directory / "san.ext").write_text(f"subjectAltName = IP:{host}\n")
    signed = ("-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile")
    openssl("x509", "-req", "-in", "server.csr", *signed, "san.ext", "-out", "server.crt")
    files = ("ca.crt", "server.crt", "server.key")
    return Certificates(*((directory / name).read_text() for name in files))


# -- the page's recipe ----------------------------------------------------------------------

#: Where each ```sql block of docs/managed-postgresql.md runs, by how its first line begins.
TARGETS = {
    "-- On the gateway": "gateway",
    "-- On the managed database, as its administrator": "admin",
    "-- On the managed database, as the app": "app",
}


def recipe(text: str) -> list[tuple[str, Block]]:
    """The page's ```sql blocks in order, each with its target (:data:`TARGETS`); a
    ValueError names a block whose first line names none."""
    steps = []
    for block in blocks(text):
        if block.language != "sql":
            continue
        first = block.text.splitlines()[0]
        target = next((t for prefix, t in TARGETS.items() if first.startswith(prefix)), None)
        if target is None:
            raise ValueError(
                f"docs/managed-postgresql.md line {block.line}: a ```sql block must begin with "
                f"one of {', '.join(TARGETS)}, not {first!r}"
            )
        steps.append((target, block))
    return steps


def hba_lines(text: str) -> list[str]:
    """The page's pg_hba.conf lines for the gateway (its block without an info string whose
    lines begin with ``hostssl``)."""
    for block in blocks(text):
        lines = block.text.splitlines()
        if not block.language and lines and all(line.startswith("hostssl") for line in lines):
            return lines
    raise ValueError("docs/managed-postgresql.md has no pg_hba.conf block of hostssl lines")
