"""The tier-2 server in a container built from docker/Dockerfile, when no local Multicorn2.

The image carries Multicorn2 and this checkout's cognito_fdw; the emulator stays on the
host and the container reaches it through the host gateway.
"""

from __future__ import annotations

from cognito_fdw.tools.host import checkout


def docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
    except Exception:  # noqa: BLE001 - any failure means: no usable engine
        return False
    return True


class DockerPostgres:
    def __init__(self, env: dict):
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.image import DockerImage

        self._image = DockerImage(path=str(checkout()), dockerfile_path="docker/Dockerfile")
        self._env = env
        self._container_class = DockerContainer
        self.container = None

    def start(self):
        self._image.build()
        self.container = (
            self._container_class(str(self._image))
            .with_env("POSTGRES_HOST_AUTH_METHOD", "trust")
            .with_exposed_ports(5432)
            .with_kwargs(extra_hosts={"host.docker.internal": "host-gateway"})
        )
        for key, value in self._env.items():
            self.container.with_env(key, value)
        self.container.start()
        from testcontainers.core.waiting_utils import wait_for_logs

        wait_for_logs(self.container, "database system is ready to accept connections", 120)
        return self

    @property
    def dsn(self) -> str:
        host = self.container.get_container_host_ip()
        port = self.container.get_exposed_port(5432)
        return f"host={host} port={port} user=postgres dbname=postgres"

    def host_url(self, port: int) -> str:
        return f"http://host.docker.internal:{port}"

    def log(self) -> str:
        out, err = self.container.get_logs()
        return (out + err).decode(errors="replace")

    def cleanup(self) -> None:
        self.container.stop()
