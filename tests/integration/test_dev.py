"""The local ``make dev`` path end to end: ``cognito-fdw dev up --no-psql``, the demo query,
doctor on the result, ``dev down``, nothing left running; then again on the kept cluster."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cognito_fdw.tools import dev
from cognito_fdw.tools.devstack import checkout, multicorn_missing, postgres_bindir

pytestmark = pytest.mark.skipif(
    multicorn_missing(postgres_bindir()) is not None,
    reason="the local dev stack needs a local PostgreSQL with Multicorn2",
)


def cognito_fdw(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(checkout())}
    return subprocess.run(
        [sys.executable, "-m", "cognito_fdw.tools.cli", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.fixture
def base():
    path = Path(tempfile.mkdtemp(prefix="cognito-fdw-dev-")) / ".dev"
    path.parent.chmod(0o755)  # as a checkout is: PostgreSQL's OS user must enter it
    yield path
    # Whatever happened, stop what the test started before deleting its files.
    cognito_fdw("dev", "down", "--base", str(path))
    shutil.rmtree(path.parent, ignore_errors=True)


def up_and_down(base: Path) -> tuple[subprocess.CompletedProcess, dev.State]:
    up = cognito_fdw("dev", "up", "--mode", "local", "--no-psql", "--base", str(base))
    assert up.returncode == 0, up.stderr
    state = dev.State.load(base / "state.json")
    assert dev._running(state.postgres_pid, str(base / "pg" / "data"))
    assert dev._running(state.moto_pid, "moto_server")

    assert_private(base, state)
    dsn = f"postgresql://postgres@127.0.0.1:{state.db_port}/postgres?passfile={base}/pg/pgpass"
    checked = cognito_fdw("doctor", dsn)
    assert checked.returncode == 0, checked.stdout

    down = cognito_fdw("dev", "down", "--base", str(base))
    assert down.returncode == 0, down.stderr
    assert not dev._running(state.postgres_pid, str(base / "pg" / "data"))
    assert not dev._running(state.moto_pid, "moto_server")
    assert not listening(state.db_port) and not listening(state.moto_port)
    assert processes_mentioning(str(base)) == []
    return up, state


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def psql_as(user: str, *args: str) -> subprocess.CompletedProcess:
    psql = str(postgres_bindir() / "psql")
    return subprocess.run(
        [psql, "-X", "-w", *args, "-c", "SELECT 1"], user=user, group=pwd.getpwnam(user).pw_gid,
        extra_groups=[], capture_output=True, text=True, timeout=30, cwd="/",
    )  # fmt: skip


def assert_private(base: Path, state: dev.State) -> None:
    """Only the OS user who started the stack (and the server's own, on its socket) gets in."""
    pg = base / "pg"
    assert mode(pg) == 0o700
    assert mode(pg / f".s.PGSQL.{state.db_port}") == 0o700
    for log in (pg / "server.log", base / "moto.log"):
        assert mode(log) == 0o600, log
    assert mode(pg / "pgpass") == 0o600 and (pg / "pgpass").stat().st_uid == os.geteuid()
    assert not (pg / "initdb.password").exists()
    rules = [
        line.split()
        for line in (pg / "data" / "pg_hba.conf").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert [rule[0] for rule in rules] == ["local", "host", "host"]
    assert rules[0][3:] == ["peer", "map=owner"]
    assert all(rule[4:] == ["scram-sha-256"] for rule in rules[1:])
    if os.geteuid() != 0:
        return  # only root can try as another user
    server_user = pwd.getpwuid((pg / "data").stat().st_uid).pw_name
    url = f"postgresql://postgres@127.0.0.1:{state.db_port}/postgres"
    stranger = "nobody" if server_user != "nobody" else "daemon"
    for args in ([url], [f"{url}?passfile={pg}/pgpass"], ["-h", str(pg), "-p", str(state.db_port),
                 "-U", "postgres"]):  # fmt: skip
        refused = psql_as(stranger, *args)
        assert refused.returncode != 0, args
        assert re.search(r"password|[Pp]ermission denied", refused.stderr), refused.stderr
    # The server's own OS user logs in on its socket: the wrapper's vault loopback does.
    own = psql_as(server_user, "-h", str(pg), "-p", str(state.db_port), "-U", "postgres")
    assert own.returncode == 0, own.stderr


def test_dev_up_query_down_and_again(base):
    first, state = up_and_down(base)
    assert "user0001 | user0001@example.com | CONFIRMED" in first.stdout
    assert "(5 rows)" in first.stdout
    assert "200 users created" in first.stderr
    url = f"postgresql://postgres@127.0.0.1:{state.db_port}/postgres?passfile={base}/pg/pgpass"
    assert f"psql '{url}'" in first.stdout

    # The cluster is kept; moto starts empty and is seeded again under the same pool id.
    second, _ = up_and_down(base)
    assert "(5 rows)" in second.stdout
    assert "NOTICE" not in second.stderr
    assert (base / "pg" / "data").is_dir()
