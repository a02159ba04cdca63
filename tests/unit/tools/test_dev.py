"""``cognito-fdw dev``: which stack, what it says when there is none, the compose commands,
the ports it picks and says, and what a failed ``up`` leaves behind (nothing)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cognito_fdw.tools import cli, dev, devdocker, preflight
from cognito_fdw.tools.devstack import MotoServer


@pytest.fixture
def neither(monkeypatch):
    monkeypatch.setattr(preflight, "docker_missing", lambda: "no `docker` command on PATH")
    monkeypatch.setattr(preflight, "local_missing", lambda: "multicorn.so is missing")


def test_without_docker_or_multicorn_it_says_what_is_missing_and_how_to_get_it(neither, capsys):
    assert cli.main(["dev", "up", "--base", "unused"]) == 1
    err = capsys.readouterr().err
    assert "Docker: no `docker` command on PATH" in err
    assert "Local PostgreSQL + Multicorn2: multicorn.so is missing" in err
    assert "https://docs.docker.com/engine/install/" in err
    assert "apt-get install postgresql-15 postgresql-server-dev-15" in err
    assert "https://github.com/pgsql-io/multicorn2" in err


def test_the_preflight_says_it_before_anything_is_installed(neither, capsys):
    assert preflight.main([]) == 1
    err = capsys.readouterr().err
    assert "Local PostgreSQL + Multicorn2: multicorn.so is missing" in err
    assert err.rstrip().endswith("make dev: nothing was installed.")


@pytest.fixture
def reachable(monkeypatch):
    """As root, pytest's 0700 tmp_path is closed to the server's OS user; not the point here."""
    monkeypatch.setattr(preflight, "unreachable", lambda base: None)


def test_auto_prefers_docker(monkeypatch, tmp_path, capsys, reachable):
    monkeypatch.setattr(preflight, "docker_missing", lambda: None)
    monkeypatch.setattr(preflight, "local_missing", lambda: None)
    assert preflight.choose_mode("auto", tmp_path) == "docker"
    assert preflight.choose_mode("local", tmp_path) == "local"
    assert preflight.main([]) == 0
    assert "the compose stack" in capsys.readouterr().out


def test_auto_falls_back_to_local(monkeypatch, tmp_path, reachable):
    monkeypatch.setattr(preflight, "docker_missing", lambda: "`docker info` failed: no daemon")
    monkeypatch.setattr(preflight, "local_missing", lambda: None)
    assert preflight.choose_mode("auto", tmp_path) == "local"
    with pytest.raises(preflight.DevError, match="no daemon"):
        preflight.choose_mode("docker", tmp_path)


def test_a_python_other_than_the_servers_is_named_with_the_fix(monkeypatch, tmp_path):
    # make dev's .venv serves boto3 to the server's embedded Python: same minor version.
    monkeypatch.setattr(preflight, "postgres_bindir", lambda: tmp_path)
    monkeypatch.setattr(preflight, "multicorn_library", lambda bindir: tmp_path / "multicorn.so")
    monkeypatch.setattr(preflight, "embedded_python", lambda library: "3.99")
    monkeypatch.setattr(preflight, "multicorn_missing", lambda bindir: "multicorn.so embeds 3.99")
    assert preflight.local_missing() == (
        "multicorn.so embeds 3.99: run make dev PYTHON=python3.99 (or its full path)"
    )


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    """A ``docker`` that records its arguments and succeeds (there is no engine here)."""
    calls = tmp_path / "calls"
    script = tmp_path / "docker"
    # Also the password compose would read, and what psql would read on stdin.
    script.write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n'
        f'case "$*" in *" port "*) cat {tmp_path}/published 2>/dev/null; exit 0;; esac\n'
        f'echo "$POSTGRES_PASSWORD" >> {tmp_path}/passwords\n'
        f'case "$*" in *" up "*) echo "$COGNITO_FDW_DB_PORT" >> {tmp_path}/ports;; esac\n'
        f'case "$*" in *" up "*) grep -q up {tmp_path}/fail 2>/dev/null && exit 1;; esac\n'
        f'case "$*" in *"exec -T db psql"*) cat >> {tmp_path}/stdin;; esac\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return lambda: calls.read_text().splitlines() if calls.exists() else []


def test_docker_up_builds_waits_and_shows_the_query(fake_docker, tmp_path, capsys):
    assert cli.main(["dev", "up", "--no-psql", "--base", str(tmp_path / "dev")]) == 0
    compose = f"compose -f {devdocker.compose_file()}"
    assert fake_docker() == [
        "info",
        "compose version",
        f"{compose} port db 5432",  # is it running already, and on which port?
        f"{compose} port cognito 5000",
        f"{compose} up -d --build --wait",
        f"{compose} exec -T db psql -U postgres -d postgres -q -v ON_ERROR_STOP=1",
        f"{compose} exec -T db {devdocker.INIT_SCRIPT}",  # again: it is idempotent
        # Without a pager: psql's would leave a newcomer at "(END)".
        f"{compose} exec db psql -U postgres -d postgres -X -P pager=off -c {dev.DEMO_QUERY}",
        f"{compose} port db 5432",  # the URL names the port that answers
    ]
    # 54329 unless another program holds it (the next test): the port compose was given.
    (port,) = (tmp_path / "ports").read_text().split()
    passfile = tmp_path / "dev" / "docker.pgpass"
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres?passfile={passfile}"
    assert url in capsys.readouterr().out


@pytest.fixture
def taken_db_port(monkeypatch):
    """The PostgreSQL port the stack is asked for (COGNITO_FDW_DB_PORT), held by a listener."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        monkeypatch.setenv(dev.DB_PORT_VARIABLE, str(port))
        yield port


def test_docker_up_on_a_taken_port_says_so_and_prints_the_port_it_used(
    fake_docker, taken_db_port, tmp_path, capsys
):
    assert cli.main(["dev", "up", "--no-psql", "--base", str(tmp_path / "dev")]) == 0
    out, err = capsys.readouterr()
    assert f"port {taken_db_port} is taken (another program listens there)" in err
    (port,) = (tmp_path / "ports").read_text().split()  # what `compose up` was given
    assert int(port) != taken_db_port
    assert f"postgresql://postgres@127.0.0.1:{port}/postgres" in out


def test_docker_up_after_down_gets_its_ports_back(fake_docker, taken_db_port, tmp_path, capsys):
    # The preferred port stays taken: the port chosen the first time is chosen again, so the
    # URL printed (and any psql the developer keeps) still answers after `make down`.
    for _ in range(2):
        assert cli.main(["dev", "up", "--no-psql", "--base", str(tmp_path / "dev")]) == 0
    first, second = (tmp_path / "ports").read_text().split()
    assert first == second != str(taken_db_port)
    assert f"keeps port {first} from its last run" in capsys.readouterr().err


def test_a_port_variable_that_is_no_port_is_refused(monkeypatch):
    monkeypatch.setenv(dev.DB_PORT_VARIABLE, "54329x")
    with pytest.raises(dev.DevError, match="COGNITO_FDW_DB_PORT='54329x' is not a port number"):
        dev.preferred_port(dev.DB_PORT_VARIABLE, dev.DB_PORT)


def test_docker_up_reads_the_ports_of_a_running_stack(fake_docker, tmp_path, capsys):
    # A running stack keeps its ports (compose would recreate containers otherwise): the URL
    # printed is the one Docker reports.
    (tmp_path / "published").write_text("127.0.0.1:41234\n")
    assert cli.main(["dev", "up", "--no-psql", "--base", str(tmp_path / "dev")]) == 0
    assert "postgresql://postgres@127.0.0.1:41234/postgres" in capsys.readouterr().out
    assert (tmp_path / "ports").read_text().split() == ["41234"]


def test_a_failed_docker_up_stops_what_it_started(fake_docker, tmp_path, capsys):
    (tmp_path / "fail").write_text("up")
    assert cli.main(["dev", "up", "--no-psql", "--base", str(tmp_path / "dev")]) == 1
    compose = f"compose -f {devdocker.compose_file()}"
    assert fake_docker()[-1] == f"{compose} stop"
    err = capsys.readouterr().err
    assert "failed while building the image and starting the stack (docker compose up)" in err
    assert "stopped the compose stack again" in err


def test_docker_up_gives_the_database_a_password_of_its_own(fake_docker, tmp_path):
    for _ in range(2):  # the second run keeps the first one's password
        assert cli.main(["dev", "up", "--no-psql", "--base", str(tmp_path / "dev")]) == 0
    passfile = tmp_path / "dev" / "docker.pgpass"
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    host, port, db, user, password = passfile.read_text().strip().split(":")
    assert (host, user, len(password)) == ("127.0.0.1", "postgres", 48)
    passwords = set((tmp_path / "passwords").read_text().split())
    assert passwords == {password}  # what `up` (and the exec after it) got from us
    # A volume made before keeps its password: the role is given this one, off the log.
    sql = (tmp_path / "stdin").read_text()
    assert f"ALTER ROLE postgres PASSWORD '{password}'" in sql
    assert sql.index("log_statement = 'none'") < sql.index("ALTER ROLE")


def test_down_brings_the_compose_stack_down(fake_docker, tmp_path):
    assert cli.main(["dev", "down", "--base", str(tmp_path / "dev")]) == 0
    assert fake_docker()[-1] == f"compose -f {devdocker.compose_file()} down"


def test_a_pid_counts_as_ours_only_with_our_command_line():
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; print(flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
    )
    child.stdout.readline()  # until then /proc may still show the parent's command line
    try:
        assert dev._running(child.pid, "time.sleep(30)")
        assert not dev._running(child.pid, MotoServer.MARKER)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert not dev._running(child.pid, "time.sleep(30)")
    assert not dev._running(None, "anything")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to another user")
def test_as_root_a_base_the_server_user_cannot_enter_is_refused(monkeypatch, capsys, request):
    # A clone under /root: found before anything is installed (the preflight), with the fix.
    monkeypatch.setattr(preflight, "local_missing", lambda: None)
    open_dir = Path(tempfile.mkdtemp(prefix="cognito-fdw-test-", dir="/tmp"))
    open_dir.chmod(0o755)  # pytest's own tmp_path is closed at its top already
    closed = open_dir / "closed"
    closed.mkdir(mode=0o700)
    request.addfinalizer(lambda: shutil.rmtree(open_dir))
    assert preflight.main(["--mode", "local", "--base", str(closed / ".dev")]) == 1
    err = capsys.readouterr().err
    assert f"cannot enter {closed}, on the way to {closed / '.dev'}" in err
    assert f"chmod o+x {closed}" in err and "nothing was installed" in err
    assert cli.main(["dev", "up", "--mode", "local", "--base", str(closed / ".dev")]) == 1
    assert f"cannot enter {closed}" in capsys.readouterr().err


def test_a_cluster_from_before_the_stack_was_private_is_refused(
    tmp_path, monkeypatch, capsys, reachable
):
    monkeypatch.setattr(preflight, "local_missing", lambda: None)
    base = tmp_path / ".dev"
    (base / "pg" / "data").mkdir(parents=True)  # a cluster, and no pgpass beside it
    assert cli.main(["dev", "up", "--mode", "local", "--base", str(base)]) == 1
    err = capsys.readouterr().err
    assert "open to every local user" in err and f"delete {base}" in err


# -- a local up that fails stops what it started ------------------------------------------


def _sleeper(*marker: str) -> subprocess.Popen:
    """A process whose command line holds ``marker``, as a server dev would stop."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; print(flush=True); time.sleep(120)", *marker],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    child.stdout.readline()  # until then /proc may still show the parent's command line
    child.stdout.close()
    return child


@pytest.fixture
def fake_servers(tmp_path, monkeypatch):
    """moto and PostgreSQL as sleeping processes, a psql that fails, and a seed that works:
    everything local_up starts is a real process it must stop."""
    children = []

    class FakeMoto:
        MARKER = MotoServer.MARKER

        def __init__(self, port, **kwargs):
            self.port = port

        def start(self):
            self.process = _sleeper(self.MARKER)
            children.append(self.process)
            return self

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "psql").write_text(
        f'#!/bin/sh\necho "$*" >> {tmp_path}/psql-calls\n'
        f"test -e {tmp_path}/psql-works && exit 0\n"
        "echo 'psql: ERROR: boom' >&2\nexit 3\n"
    )
    (bindir / "psql").chmod(0o755)

    class FakePostgres:
        def __init__(self, base, port, **kwargs):
            self.base, self.port, self.bindir = Path(base), port, bindir
            self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

        def start(self):
            self.process = _sleeper(str(self.base / "data"))
            children.append(self.process)
            return self

    monkeypatch.setattr(dev, "MotoServer", FakeMoto)
    monkeypatch.setattr(dev, "LocalPostgres", FakePostgres)
    monkeypatch.setattr(dev, "ensure_pool", lambda client, name, **kwargs: "us-east-1_x")
    monkeypatch.setattr(dev, "seed_pool", lambda *args, **kwargs: "seeded")
    monkeypatch.setattr(dev, "choose_port", lambda preferred, *args: preferred)
    (tmp_path / ".dev" / "pg" / "data").mkdir(parents=True)
    (tmp_path / ".dev" / "pg" / "pgpass").write_text("")
    yield children
    for child in children:
        child.kill()
        child.wait()


def test_a_failed_local_up_stops_the_servers_it_started_and_says_what_failed(
    fake_servers, tmp_path, capsys
):
    base = tmp_path / ".dev"
    with pytest.raises(dev.DevError) as failure:
        dev.local_up(base, psql=False)
    message = str(failure.value)
    assert message.startswith("failed while running sql/cognito_fdw.sql: psql exited with")
    assert "stopped what this run had started (moto, PostgreSQL)" in message
    assert str(base / "pg" / "server.log") in message
    for child in fake_servers:
        assert child.wait(5) is not None  # stopped, not left running
    state = dev.State.load(base / "state.json")
    assert (state.db_port, state.moto_port) == (dev.DB_PORT, dev.MOTO_PORT)
    # Each step was said as it began.
    err = capsys.readouterr().err
    for step in ("moto: starting", "seed: pool 'demo'", "PostgreSQL: starting", "init: "):
        assert step in err


def test_a_failure_leaves_servers_of_an_earlier_run_alone(fake_servers, tmp_path):
    base = tmp_path / ".dev"
    earlier = _sleeper(MotoServer.MARKER)
    fake_servers.append(earlier)
    dev.State(dev.DB_PORT, dev.MOTO_PORT, None, earlier.pid).save(base / "state.json")
    with pytest.raises(dev.DevError, match=r"stopped what this run had started \(PostgreSQL\)"):
        dev.local_up(base, psql=False)
    assert earlier.poll() is None  # moto from before still runs; only this run's are stopped


def test_a_local_up_ends_with_the_preview_unpaged_and_the_url(fake_servers, tmp_path, capsys):
    (tmp_path / "psql-works").touch()
    assert dev.local_up(tmp_path / ".dev", psql=False) == 0
    preview = (tmp_path / "psql-calls").read_text().splitlines()[-1]
    assert preview.endswith(f"-X -P pager=off -c {dev.DEMO_QUERY}")
    out, err = capsys.readouterr()
    assert f"psql postgresql://postgres@127.0.0.1:{dev.DB_PORT}/postgres" in out
    assert "ready: PostgreSQL on 127.0.0.1:" in err
    for child in fake_servers:
        assert child.poll() is None  # a stack that came up keeps running
