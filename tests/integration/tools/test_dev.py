"""The local ``make dev`` path end to end: ``cognito-fdw dev up --no-psql`` with its default
PostgreSQL port taken, the demo query, doctor on the result, ``dev up`` again in a terminal
(no pager), ``dev down``, nothing left running; then again on the kept cluster, with the same
port and the same users' subs."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import pwd
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import termios
from pathlib import Path

import boto3
import pytest

from cognito_fdw.tools import dev
from cognito_fdw.tools.devstack import MotoServer, free_port
from cognito_fdw.tools.host import checkout, multicorn_missing, postgres_bindir

from ...support.processes import listening, processes_mentioning

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


@pytest.fixture
def base():
    path = Path(tempfile.mkdtemp(prefix="cognito-fdw-dev-")) / ".dev"
    path.parent.chmod(0o755)  # as a checkout is: PostgreSQL's OS user must enter it
    yield path
    # Whatever happened, stop what the test started before deleting its files.
    cognito_fdw("dev", "down", "--base", str(path))
    shutil.rmtree(path.parent, ignore_errors=True)


def up(base: Path) -> tuple[subprocess.CompletedProcess, dev.State]:
    result = cognito_fdw("dev", "up", "--mode", "local", "--no-psql", "--base", str(base))
    assert result.returncode == 0, result.stderr
    state = dev.State.load(base / "state.json")
    assert dev._running(state.postgres_pid, str(base / "pg" / "data"))
    assert dev._running(state.moto_pid, MotoServer.MARKER)
    return result, state


def down(base: Path, state: dev.State) -> None:
    result = cognito_fdw("dev", "down", "--base", str(base))
    assert result.returncode == 0, result.stderr
    assert not dev._running(state.postgres_pid, str(base / "pg" / "data"))
    assert not dev._running(state.moto_pid, MotoServer.MARKER)
    assert not listening(state.db_port) and not listening(state.moto_port)
    assert processes_mentioning(str(base)) == []


def url_of(base: Path, state: dev.State) -> str:
    return f"postgresql://postgres@127.0.0.1:{state.db_port}/postgres?passfile={base}/pg/pgpass"


def subs(state: dev.State) -> dict[str, str]:
    """username -> sub of the demo pool in the running stack's moto."""
    client = boto3.client(
        "cognito-idp", region_name=dev.REGION, endpoint_url=f"http://127.0.0.1:{state.moto_port}",
        **dev.DUMMY_KEYS,
    )  # fmt: skip
    (pool,) = client.list_user_pools(MaxResults=60)["UserPools"]
    pages = client.get_paginator("list_users").paginate(UserPoolId=pool["Id"])
    return {
        user["Username"]: next(a["Value"] for a in user["Attributes"] if a["Name"] == "sub")
        for page in pages for user in page["Users"]
    }  # fmt: skip


@pytest.fixture
def db_port(monkeypatch):
    """The PostgreSQL port the stack is asked for (COGNITO_FDW_DB_PORT): a free one of the
    test's, not 54329, which a developer's own stack may hold; moto's likewise."""
    port, moto_port = free_port(), free_port()
    monkeypatch.setenv(dev.DB_PORT_VARIABLE, str(port))
    monkeypatch.setenv(dev.MOTO_PORT_VARIABLE, str(moto_port))
    return port


@contextlib.contextmanager
def holding(port: int):
    """``port`` taken by a listener of the test's."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield


def in_a_small_terminal(*args: str) -> tuple[str, bool]:
    """``cognito-fdw`` run on a 4-row terminal with a PAGER that leaves a mark: its output,
    and whether anything called the pager (psql pages what does not fit a terminal)."""
    marker = Path(tempfile.mkdtemp()) / "paged"
    pager = marker.with_name("pager")
    pager.write_text(f"#!/bin/sh\ntouch {marker}\ncat >/dev/null\n")
    pager.chmod(0o755)
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 4, 40, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(checkout()), "PAGER": str(pager)}
    env["PSQL_PAGER"] = str(pager)  # psql prefers it to PAGER; an empty one turns paging off
    child = subprocess.Popen(
        [sys.executable, "-m", "cognito_fdw.tools.cli", *args],
        stdin=follower, stdout=follower, stderr=follower, env=env,
    )  # fmt: skip
    os.close(follower)
    output = b""
    with contextlib.suppress(OSError):  # EIO once the child has closed the terminal
        while chunk := os.read(leader, 65536):
            output += chunk
    os.close(leader)
    assert child.wait(300) == 0, output.decode(errors="replace")
    paged = marker.exists()
    shutil.rmtree(marker.parent)
    return output.decode(errors="replace"), paged


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


def test_dev_up_query_down_and_again(base, db_port):
    with holding(db_port):
        first, state = up(base)
        # Each step said as it begins, and where the URL of the README does not apply, why.
        steps = ("moto: started on port", "seed: pool 'demo', 200 users", "200/200 users",
                 "PostgreSQL: creating a cluster in", "init: ", "ready: PostgreSQL on")  # fmt: skip
        for step in steps:
            assert step in first.stderr, step
        assert f"port {db_port} is taken (another program listens there)" in first.stderr
        assert state.db_port != db_port
        assert "user0001 | user0001@example.com | CONFIRMED" in first.stdout
        assert "(5 rows)" in first.stdout
        assert "200 users created" in first.stderr
        assert f"psql '{url_of(base, state)}'" in first.stdout
        assert_private(base, state)
        checked = cognito_fdw("doctor", url_of(base, state))
        assert checked.returncode == 0, checked.stdout
        before = subs(state)

        # make dev again, in a terminal, while the stack runs: nothing restarts, the same URL,
        # and the preview is printed, not paged.
        output, paged = in_a_small_terminal(
            "dev", "up", "--mode", "local", "--no-psql", "--base", str(base)
        )
        assert f"PostgreSQL: already running on port {state.db_port}" in output
        assert url_of(base, state) in output and "(5 rows)" in output
        assert not paged
        down(base, state)

    # The port is free again; the stack keeps the one its URL was printed with.
    second, again = up(base)
    assert f"PostgreSQL keeps port {state.db_port} from its last run" in second.stderr
    assert again.db_port == state.db_port
    assert f"psql '{url_of(base, state)}'" in second.stdout
    # moto started empty and was seeded again: the same users, with the same subs.
    assert "(5 rows)" in second.stdout and "200 users created" in second.stderr
    assert subs(again) == before
    assert "NOTICE" not in second.stderr
    assert (base / "pg" / "data").is_dir()
    down(base, again)
