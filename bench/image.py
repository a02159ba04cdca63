"""The Docker image's section of BENCHMARKS.md: its size and build time on each Docker
tier's base (tests/support/docker.py builds the offline stand-ins of the official images).

Measured: a build with ``--no-cache`` (every step of docker/Dockerfile, the stand-in base
already built), then the same build again from the layer cache. Needs a Docker engine and
Multicorn2's archive (docs/docker.md); without them the section says so and keeps no numbers.
"""

from __future__ import annotations

import os
import subprocess
import time

from tests.support import docker

HEADING = "## The Docker image"


def _size(image: str) -> int:
    done = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", image],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def _build(tier: docker.Tier, tag: str, *extra: str) -> float:
    started = time.monotonic()
    command, env = docker.builder()
    args = ["--build-arg", f"BASE_IMAGE={tier.base}",
            "--build-arg", f"MULTICORN2_URL={docker.ARCHIVE_URL}"]  # fmt: skip
    repo = docker.checkout()
    with docker.archive_served():
        subprocess.run(
            [*command, "-f", str(repo / "docker" / "Dockerfile"), "-t", tag, *args,
             "--network", "host", *docker.ca_secret_args(), *extra, str(repo)],
            check=True, env=env, capture_output=True,
        )  # fmt: skip
    return time.monotonic() - started


def section() -> list[str]:
    lines = [HEADING, ""]
    missing = docker.engine_missing() or (None if docker.builder() else "no BuildKit client")
    if missing is None and docker.archive() is None:
        missing = "no Multicorn2 archive for a build without cache (docs/docker.md)"
    if missing:
        return [*lines, f"Not measured: {missing}.", ""]
    lines += [
        "`docker/Dockerfile` built with BuildKit on each Docker tier's stand-in base "
        "(docs/docker.md): every step without cache (`--no-cache`; Multicorn2's archive served "
        "on loopback), then the same build from the layer cache.",
        "",
        "| base | image | base alone | the image's layers | build, no cache (s) "
        "| build, cached (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for tier in docker.TIERS.values():
        base = docker.standin_postgres(tier)
        tag = f"cognito-fdw:bench-pg{tier.major}"
        cold = _build(tier, tag, "--no-cache")
        warm = _build(tier, tag)
        image, below = _size(tag), _size(base)
        lines.append(
            f"| {base} (PostgreSQL {tier.major}, Python {'.'.join(map(str, tier.python))}) "
            f"| {image / 1e6:,.0f} MB | {below / 1e6:,.0f} MB | {(image - below) / 1e6:,.0f} MB "
            f"| {cold:.0f} | {warm:.1f} |"
        )
        subprocess.run(["docker", "image", "rm", tag], capture_output=True)
    lines += [
        "",
        f"Load average at the end: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs). The "
        "official `postgres` images are smaller than the stand-ins (which carry debootstrap's "
        "minbase and Debian's own PostgreSQL packages); the image's own layers are the part "
        "that carries over.",
        "",
    ]
    return lines


if __name__ == "__main__":
    print("\n".join(section()))
