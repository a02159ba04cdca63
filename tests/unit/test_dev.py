"""``cognito-fdw dev``: which stack, what it says when there is none, the compose commands."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from cognito_fdw.tools import cli, dev


@pytest.fixture
def neither(monkeypatch):
    monkeypatch.setattr(dev, "docker_missing", lambda: "no `docker` command on PATH")
    monkeypatch.setattr(dev, "multicorn_missing", lambda bindir: "multicorn.so is missing")


def test_without_docker_or_multicorn_it_says_what_is_missing_and_how_to_get_it(neither, capsys):
    assert cli.main(["dev", "up", "--base", "unused"]) == 1
    err = capsys.readouterr().err
    assert "Docker: no `docker` command on PATH" in err
    assert "Local PostgreSQL + Multicorn2: multicorn.so is missing" in err
    assert "https://docs.docker.com/engine/install/" in err
    assert "apt-get install postgresql-15 postgresql-server-dev-15" in err
    assert "https://github.com/pgsql-io/multicorn2" in err


def test_auto_prefers_docker(monkeypatch):
    monkeypatch.setattr(dev, "docker_missing", lambda: None)
    monkeypatch.setattr(dev, "multicorn_missing", lambda bindir: None)
    assert dev.choose_mode("auto") == "docker"
    assert dev.choose_mode("local") == "local"


def test_auto_falls_back_to_local(monkeypatch):
    monkeypatch.setattr(dev, "docker_missing", lambda: "`docker info` failed: no daemon")
    monkeypatch.setattr(dev, "multicorn_missing", lambda bindir: None)
    assert dev.choose_mode("auto") == "local"
    with pytest.raises(dev.DevError, match="no daemon"):
        dev.choose_mode("docker")


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    """A ``docker`` that records its arguments and succeeds (there is no engine here)."""
    calls = tmp_path / "calls"
    script = tmp_path / "docker"
    # Also the password compose would read, and what psql would read on stdin.
    script.write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\necho "$POSTGRES_PASSWORD" >> {tmp_path}/passwords\n'
        f'case "$*" in *"exec -T"*) cat >> {tmp_path}/stdin;; esac\n'
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return lambda: calls.read_text().splitlines() if calls.exists() else []


def test_docker_up_builds_waits_and_shows_the_query(fake_docker, tmp_path, capsys):
    assert cli.main(["dev", "up", "--no-psql", "--base", str(tmp_path / "dev")]) == 0
    compose = f"compose -f {dev.compose_file()}"
    assert fake_docker() == [
        "info",
        "compose version",
        f"{compose} up -d --build --wait",
        f"{compose} exec -T db psql -U postgres -d postgres -q -v ON_ERROR_STOP=1",
        f"{compose} exec db psql -U postgres -d postgres -c {dev.DEMO_QUERY}",
    ]
    passfile = tmp_path / "dev" / "docker.pgpass"
    url = f"postgresql://postgres@127.0.0.1:54329/postgres?passfile={passfile}"
    assert url in capsys.readouterr().out


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
    assert fake_docker()[-1] == f"compose -f {dev.compose_file()} down"


def test_a_pid_counts_as_ours_only_with_our_command_line():
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; print(flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
    )
    child.stdout.readline()  # until then /proc may still show the parent's command line
    try:
        assert dev._running(child.pid, "time.sleep(30)")
        assert not dev._running(child.pid, "moto_server")
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert not dev._running(child.pid, "time.sleep(30)")
    assert not dev._running(None, "anything")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the cluster to another user")
def test_as_root_a_base_the_server_user_cannot_enter_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dev, "multicorn_missing", lambda bindir: None)
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    assert cli.main(["dev", "up", "--mode", "local", "--base", str(closed / ".dev")]) == 1
    assert f"cannot enter {closed}" in capsys.readouterr().err


def test_a_cluster_from_before_the_stack_was_private_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(dev, "multicorn_missing", lambda bindir: None)
    base = tmp_path / ".dev"
    (base / "pg" / "data").mkdir(parents=True)  # a cluster, and no pgpass beside it
    assert cli.main(["dev", "up", "--mode", "local", "--base", str(base)]) == 1
    err = capsys.readouterr().err
    assert "open to every local user" in err and f"delete {base}" in err
