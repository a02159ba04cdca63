"""A throwaway PostgreSQL cluster with Multicorn2, and a moto Cognito emulator.

Used by the real-server tests and by ``make dev`` on a machine without a Docker engine.
Nothing here is imported by the wrapper itself.  It works from an installed package as well
as from a checkout: the server's Python is pointed at wherever ``cognito_fdw`` was imported
from (:mod:`cognito_fdw.tools.host` finds the checkout where one is needed).

initdb and postgres refuse to run as root, so when started as root the cluster runs as
an unprivileged OS user (``postgres`` when it exists, else ``nobody``); the files the
server's Python reads must then be readable by that user.

Every cluster keeps its socket, log and files to the OS user that runs it (directory and
socket 0700, log 0600).  A *private* cluster (the dev stack) also lets only its starter log
in: peer authentication on that socket, SCRAM with a generated password over loopback TCP,
the password in a 0600 pgpass file of the starter that ``url`` and ``dsn`` name.  The test
clusters keep trust on loopback TCP: the tests log in as dozens of password-less roles they
create, and the cluster lives only as long as a test run.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cognito_fdw.tools.host import PACKAGE_PARENT, postgres_bindir, server_user


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(
    port: int, timeout: float, process: subprocess.Popen | None = None, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout:.0f} s")


# What the wrapper needs inside the server: the package and its runtime dependencies.
_SERVER_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py",
                    "urllib3", "psycopg", "psycopg_binary", "typing_extensions.py")  # fmt: skip


def server_pythonpath() -> list[str]:
    """Where ``cognito_fdw`` was imported from, and this interpreter's site-packages (boto3
    and friends).

    The server embeds a Python of the same minor version (checked by multicorn_missing),
    so the pure-Python packages installed for the tests serve it as well.
    """
    import sysconfig

    paths = [str(PACKAGE_PARENT), sysconfig.get_paths()["purelib"]]
    return list(dict.fromkeys(paths))


def _readable_by(user: pwd.struct_passwd, path: str) -> bool:
    probe = subprocess.run(["test", "-r", path, "-a", "-x", path], user=user.pw_uid,
                           group=user.pw_gid, extra_groups=[])  # fmt: skip
    return probe.returncode == 0


def _copy_for_server(paths: list[str], target: Path) -> list[str]:
    """Copies of the wrapper and its dependencies where the server's OS user can read them
    (a checkout under /root is not)."""
    target.mkdir(exist_ok=True)
    # The server never imports the tools (a unit test holds the wrapper to that).
    shutil.copytree(
        PACKAGE_PARENT / "cognito_fdw", target / "cognito_fdw", dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("tools", "__pycache__"),
    )  # fmt: skip
    for name in _SERVER_PACKAGES:
        for directory in paths[1:]:
            source = Path(directory, name)
            if source.is_dir():
                shutil.copytree(source, target / name, dirs_exist_ok=True)
            elif source.exists():
                shutil.copy2(source, target / name)
    return [str(target)]


def _private_file(path: Path, owner: pwd.struct_passwd | None = None) -> int:
    """``path`` opened for appending, created or reset to mode 0600 (and given to ``owner``);
    a file descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)  # one that existed before keeps its mode otherwise
    if owner is not None:
        os.fchown(fd, owner.pw_uid, owner.pw_gid)
    return fd


def write_private(path: Path, text: str, owner: pwd.struct_passwd | None = None) -> None:
    """``path`` holding exactly ``text``, mode 0600, owned by ``owner`` (default: us)."""
    fd = _private_file(path, owner)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class LocalPostgres:
    """initdb + postgres on a loopback port, logging to a file, readable by its user alone.

    ``private``: only the starting OS user may log in (see the module docstring); otherwise
    trust over loopback TCP, for the tests.
    """

    def __init__(
        self,
        base: Path | None = None,
        port: int | None = None,
        env: dict | None = None,
        detached: bool = False,
        private: bool = False,
    ):
        self.bindir = postgres_bindir()
        self.base = Path(base or tempfile.mkdtemp(prefix="cognito-fdw-pg-"))
        self.data = self.base / "data"
        self.log_path = self.base / "server.log"
        self.port = port or free_port()
        self.extra_env = env or {}
        self.user = server_user()
        # A detached server has its own session: it outlives its starter, and a Ctrl-C typed
        # at the terminal (into psql, say) does not reach it.
        self.detached = detached
        self.private = private
        self.passfile = self.base / "pgpass"
        self._pythonpath: list[str] = []
        self.process: subprocess.Popen | None = None

    @property
    def dsn(self) -> str:
        dsn = f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"
        return f"{dsn} passfile={self.passfile}" if self.private else dsn

    @property
    def url(self) -> str:
        """The DSN as a URL, for psql and for people."""
        url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        return f"{url}?passfile={self.passfile}" if self.private else url

    @property
    def os_user(self) -> str:
        """The OS user the server runs as."""
        return (self.user or pwd.getpwuid(os.geteuid())).pw_name

    def _run_as(self):
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def _resolve_pythonpath(self) -> list[str]:
        paths = server_pythonpath()
        if self.user is not None and not all(_readable_by(self.user, p) for p in paths):
            paths = _copy_for_server(paths, self.base / "python")
        return paths

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_"))}
        env.update(
            PYTHONPATH=os.pathsep.join(self._pythonpath),
            HOME=str(self.base),
            LC_ALL="C.UTF-8",
            # The credential chain must not probe the EC2 metadata address from here.
            AWS_EC2_METADATA_DISABLED="true",
        )
        env.update(self.extra_env)
        return env

    def start(self) -> LocalPostgres:
        self.base.mkdir(parents=True, exist_ok=True)
        # The socket, the log and the initdb password live here: the server's OS user only.
        self.base.chmod(0o700)
        if self.user is not None:
            os.chown(self.base, self.user.pw_uid, self.user.pw_gid)
        self._pythonpath = self._resolve_pythonpath()
        if not self.data.exists():
            self._initdb()
        log = _private_file(self.log_path, self.user)
        self.process = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.base}",
             "-c", "unix_socket_permissions=0700", "-c", "log_file_mode=0600",
             "-c", "fsync=off", "-c", "log_min_messages=warning",
             "-c", "log_line_prefix=%m [%p] "],
            stdout=log, stderr=subprocess.STDOUT, env=self._env(),
            start_new_session=self.detached, **self._run_as(),
        )  # fmt: skip
        os.close(log)
        wait_for_port(self.port, 30, self.process)
        self._wait_ready(30)
        return self

    def _initdb(self) -> None:
        auth = ["-A", "trust"]
        pwfile = self.base / "initdb.password"
        if self.private:
            password = secrets.token_hex(24)  # hex: nothing to escape in a pgpass line
            write_private(pwfile, password + "\n", self.user)
            # Written before the cluster exists, so no moment has the cluster without it.
            write_private(self.passfile, f"127.0.0.1:*:*:postgres:{password}\n")
            auth = ["--auth-local=peer", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        try:
            subprocess.run(
                [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres", *auth,
                 "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                check=True, capture_output=True, env=self._env(), **self._run_as(),
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        if self.private:
            self._write_hba()

    def _write_hba(self) -> None:
        # The socket is reachable by the server's OS user alone (0700); it logs in as
        # postgres (the wrapper's vault loopback does, as libpq's default user) or as itself.
        me = self.os_user
        ident = "".join(f"owner  {me}  {role}\n" for role in dict.fromkeys(("postgres", me)))
        write_private(self.data / "pg_ident.conf", ident, self.user)
        write_private(
            self.data / "pg_hba.conf",
            "# cognito-fdw dev stack: only the OS user who started it logs in (devstack.py).\n"
            "local  all  all                 peer map=owner\n"
            "host   all  all  127.0.0.1/32   scram-sha-256\n"
            "host   all  all  ::1/128        scram-sha-256\n",
            self.user,
        )

    def _wait_ready(self, timeout: float) -> None:
        """The port opens before recovery ends ("the database system is starting up")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}")
            time.sleep(0.1)
        raise TimeoutError(f"PostgreSQL on port {self.port} not ready within {timeout:.0f} s")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: don't wait for sessions
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


class MotoServer:
    """moto's HTTP server (Cognito, STS) on a free loopback port: the moto installed beside
    this Python (``python -m moto.server``), not a ``moto_server`` of another version that
    PATH may find first (pyenv shims, a system package)."""

    #: In the server's command line: tells our process from a stranger that reused its pid.
    MARKER = "moto.server"

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        env: dict | None = None,
        detached: bool = False,
        log_path: Path | None = None,
    ):
        self.port = port or free_port()
        self.host = host
        self.extra_env = env or {}
        self.detached = detached
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MotoServer:
        log = _private_file(self.log_path) if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.MARKER, "-H", self.host, "-p", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.extra_env},
            start_new_session=self.detached,
        )  # fmt: skip
        if self.log_path:
            os.close(log)
        wait_for_port(self.port, 30, self.process, self.host)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None
