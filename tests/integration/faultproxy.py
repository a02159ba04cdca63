"""A fault-injecting HTTP proxy between the wrapper and the emulator.

It forwards every request to the upstream unchanged, except those a test has armed a fault
for, which it answers the way a failing Cognito or network would: Cognito's throttling error
(HTTP 400 ``TooManyRequestsException``), 500, 503, a reset connection, a stall, a slow
answer, a truncated body, or a pagination token that repeats.

It also notes when each request arrived: the kernel's time for its first bytes at the
proxy's socket (bench.proxy.arrival), which the proxy's own threads, late on a busy
machine, do not shift.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from bench.proxy import arrival, most_in_one_second, stamp_arrivals
from cognito_fdw.tools.devstack import free_port

_ERRORS = {
    "throttle": (400, "TooManyRequestsException", "Rate exceeded"),
    "500": (500, "InternalErrorException", "Internal error"),
    "503": (503, "ServiceUnavailableException", "Service unavailable"),
}


@dataclasses.dataclass
class Fault:
    kind: str  # throttle, 500, 503, reset, stall, slow, truncate, repeat_token
    operation: str | None = None  # e.g. "ListUsers"; None: any operation
    skip: int = 0  # let this many matching requests through first
    times: int = 1  # then fail this many (-1: every one)
    seconds: float = 0.0  # for stall and slow

    def matches(self, operation: str) -> bool:
        return self.times != 0 and self.operation in (None, operation)


class FaultProxy:
    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.port = free_port()
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str | None]] = []  # (operation, fault kind or None)
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), operation)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def arm(self, *faults: Fault) -> None:
        with self._lock:
            self.faults = list(faults)
            self.log.clear()

    def requests(self, operation: str | None = None) -> list[tuple[str, str | None]]:
        with self._lock:
            return [entry for entry in self.log if operation in (None, entry[0])]

    def arrived(self, operation: str, since: float = 0.0) -> list[float]:
        """When each ``operation`` request arrived from ``since`` on (time.monotonic())."""
        with self._lock:
            return sorted(t for t, op in self.arrivals if op == operation and t >= since)

    def peak(self, operation: str, since: float = 0.0) -> int:
        """The most ``operation`` requests from ``since`` on that arrived within one second."""
        return most_in_one_second(self.arrived(operation, since))

    def _pick(self, operation: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(operation):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    if fault.times > 0:
                        fault.times -= 1
                    self.log.append((operation, fault.kind))
                    return fault
            self.log.append((operation, None))
            return None

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def setup(self):
                super().setup()
                stamp_arrivals(self.connection)

            def handle_one_request(self):
                self.arrived = arrival(self.connection)
                super().handle_one_request()

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                target = self.headers.get("X-Amz-Target", "")
                operation = target.rsplit(".", 1)[-1]
                with proxy._lock:
                    proxy.arrivals.append((self.arrived, operation))
                fault = proxy._pick(operation)
                kind = fault.kind if fault else None
                if kind in _ERRORS:
                    return self._error(*_ERRORS[kind])
                if kind == "reset":
                    # SO_LINGER 0: close with RST, as a dropped connection looks.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    return None
                if kind == "stall":
                    proxy._stopping.wait(fault.seconds)
                    self.close_connection = True
                    return None
                if kind == "slow":
                    time.sleep(fault.seconds)
                try:
                    status, headers, payload = self._forward(body)
                except OSError:  # the emulator went away (end of the session): drop it
                    self.close_connection = True
                    return None
                if kind == "repeat_token":
                    payload = self._repeat_token(body, payload)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if kind == "truncate":
                    self.wfile.write(payload[: len(payload) // 2])
                    self.close_connection = True
                    return None
                self.wfile.write(payload)
                return None

            def _forward(self, body: bytes):
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request("POST", self.path, body, headers)
                response = conn.getresponse()
                result = response.status, response.getheaders(), response.read()
                conn.close()
                return result

            def _repeat_token(self, request_body: bytes, payload: bytes) -> bytes:
                # Answer with the token the request carried: the client is sent back to a
                # page it has already read.
                sent = json.loads(request_body or b"{}")
                data = json.loads(payload)
                for key in ("PaginationToken", "NextToken"):  # ListUsers; the group APIs
                    if sent.get(key):
                        data[key] = sent[key]
                return json.dumps(data).encode()

            def _error(self, status: int, code: str, message: str):
                payload = json.dumps({"__type": code, "message": message}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("x-amzn-RequestId", f"fault-{code}")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
