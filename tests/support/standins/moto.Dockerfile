# A stand-in for motoserver/moto (the compose stack's emulator), built by the tests
# (tests/support/standins.py): moto's server from PyPI at the compose file's version, on
# Debian's Python. Differences from the official image: docs/docker.md.
ARG DEBIAN=cognito-fdw-standin/debian:bookworm
FROM ${DEBIAN}
ARG MOTO_VERSION=5.2.3
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN --mount=type=secret,id=ca \
    set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates python3 python3-venv; \
    rm -rf /var/lib/apt/lists/*; \
    if [ -s /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi; \
    python3 -m venv /opt/moto; \
    /opt/moto/bin/pip install --no-cache-dir "moto[server]==${MOTO_VERSION}"
ENV PATH=/opt/moto/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EXPOSE 5000
ENTRYPOINT ["moto_server", "-H", "0.0.0.0"]
