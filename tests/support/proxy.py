"""A forwarding HTTP proxy between the wrapper and the emulator, for the tests and the bench.

It forwards every request to the upstream unchanged, after ``delay`` seconds (an AWS-like
round trip, for the benchmark; 0 by default), except those a test has armed a fault for,
which it answers the way a failing Cognito or network would: Cognito's throttling error
(HTTP 400 ``TooManyRequestsException``), 500, 503, a reset connection, a stall, a slow
answer, a truncated body, or a pagination token that repeats.

It records every request it receives (:class:`Request`: the operation, the fault that
answered it, when it arrived), so a test or the benchmark can count requests per operation
and find the most that arrived within any one second.  Arrival times are the kernel's: when
a request's first bytes reached the proxy's socket (:func:`arrival`), not when a proxy
thread got round to reading them, which on a busy machine is up to 100 ms and more later
and would make the proxy's own delays look like the wrapper's bursts.

With ``replay``, a ListUsers request the proxy has answered before is answered again from
its memory (after the same delay), never asked of the emulator: after a warm-up scan, every
request then takes the delay and nothing else, so what limits a scan is the wrapper, not
the emulator's own time per page.

Usage::

    proxy = Proxy(moto.url, delay=0.1).start()       # endpoint_url: proxy.url
    proxy.arm(Fault("throttle", "ListUsers", skip=1))  # and forget what was recorded
    ...
    len(proxy.requests("ListUsers")), proxy.peak("ListUsers")
    proxy.stop()
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import urlsplit

from .docker import serving_host

_ERRORS = {
    "throttle": (400, "TooManyRequestsException", "Rate exceeded"),
    "500": (500, "InternalErrorException", "Internal error"),
    "503": (503, "ServiceUnavailableException", "Service unavailable"),
}


@dataclasses.dataclass
class Fault:
    kind: str  # throttle, 500, 503, reset, stall, slow, truncate, repeat_token, echo
    operation: str | None = None  # e.g. "ListUsers"; None: any operation
    skip: int = 0  # let this many matching requests through first
    times: int = 1  # then fail this many (-1: every one)
    seconds: float = 0.0  # for stall and slow

    def matches(self, operation: str) -> bool:
        return self.times != 0 and self.operation in (None, operation)


class Request(NamedTuple):
    """One request the proxy received."""

    operation: str  # the API operation, e.g. "ListUsers" (from X-Amz-Target)
    fault: str | None  # the kind of the armed fault that answered it; None: forwarded
    arrived: float  # when it arrived, on time.monotonic()'s clock


# Linux's SO_TIMESTAMPNS (asm-generic/socket.h), which Python's socket module does not name:
# each received packet carries the kernel's CLOCK_REALTIME arrival time.
SO_TIMESTAMPNS = 35


def stamp_arrivals(sock: socket.socket) -> None:
    """Have the kernel stamp the arrival of every packet ``sock`` receives (Linux)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def arrival(sock: socket.socket) -> float:
    """When the next bytes reached ``sock`` (waiting for them, reading nothing), on
    ``time.monotonic()``'s clock; now where the kernel gives no stamp."""
    try:
        _, ancillary, _, _ = sock.recvmsg(1, socket.CMSG_SPACE(16), socket.MSG_PEEK)
    except OSError:
        return time.monotonic()
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return seconds + nanoseconds / 1e9 - (time.time() - time.monotonic())
    return time.monotonic()


def most_in_one_second(stamps) -> int:
    """The most of ``stamps`` (seconds) within any one-second window."""
    stamps = sorted(stamps)
    best, start = 0, 0
    for end, stamp in enumerate(stamps):
        while stamp - stamps[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Every scan worker of several sessions may connect at once: the default backlog of 5
    # drops connections, whose retried SYN then arrives a second late.
    request_queue_size = 256


class Proxy:
    """Forwards to ``upstream`` (``http://host:port``), ``delay`` seconds late, with faults;
    with ``replay``, answers a ListUsers request it has answered before from its memory."""

    def __init__(self, upstream: str, delay: float = 0.0, replay: bool = False):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.delay = delay
        self.replay = replay
        self.faults: list[Fault] = []
        self._record: list[Request] = []
        self._answers: dict[bytes, tuple] = {}  # ListUsers request body -> answer
        self._lock = threading.Lock()
        self._local = threading.local()  # each handler thread's upstream connection
        self._stopping = threading.Event()
        # Where the server under test reaches it (a container: the Docker bridge's gateway).
        self._server = _Server((serving_host(), 0), self._handler())

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Proxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def arm(self, *faults: Fault) -> None:
        """Answer with ``faults`` from now on (none: forward everything); forget the record."""
        with self._lock:
            self.faults = list(faults)
            self._record.clear()

    def clear(self) -> None:
        """Forget the requests recorded so far; the armed faults stay."""
        with self._lock:
            self._record.clear()

    def requests(self, operation: str | None = None, since: float = 0.0) -> list[Request]:
        """The requests for ``operation`` (None: every one) that arrived from ``since`` on."""
        with self._lock:
            return [
                r for r in self._record if operation in (None, r.operation) and r.arrived >= since
            ]

    def arrived(self, operation: str | None = None, since: float = 0.0) -> list[float]:
        """When each of :meth:`requests` arrived, ascending (time.monotonic())."""
        return sorted(r.arrived for r in self.requests(operation, since))

    def peak(self, operation: str | None = None, since: float = 0.0) -> int:
        """The most of :meth:`requests` that arrived within any one second."""
        return most_in_one_second(self.arrived(operation, since))

    def _pick(self, operation: str, arrived: float) -> Fault | None:
        with self._lock:
            picked = None
            for fault in self.faults:
                if fault.matches(operation):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    if fault.times > 0:
                        fault.times -= 1
                    picked = fault
                    break
            self._record.append(Request(operation, picked and picked.kind, arrived))
            return picked

    def _answer(self, operation: str, path: str, headers: dict, body: bytes):
        """The upstream's answer (status, headers, body), or with ``replay`` the one it gave
        the same ListUsers request before."""
        if not (self.replay and operation == "ListUsers"):
            return self._forward(path, headers, body)
        # botocore serialises the same parameters to the same bytes: the body is the key.
        answer = self._answers.get(body)
        if answer is None:
            answer = self._forward(path, headers, body)
            if answer[0] == 200:
                self._answers[body] = answer
        return answer

    def _forward(self, path: str, headers: dict, body: bytes):
        """Send the request upstream: (status, headers, body)."""
        try:
            return self._send(path, headers, body)
        except (ConnectionError, http.client.HTTPException):
            # The upstream closed a kept-alive connection: once more, on a new one.
            self._local.conn = None
            return self._send(path, headers, body)

    def _send(self, path: str, headers: dict, body: bytes):
        # One upstream connection per handler thread, kept alive between its requests.
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        conn.request("POST", path, body, headers)
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()

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

            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                operation = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1]
                fault = proxy._pick(operation, self.arrived)
                kind = fault.kind if fault else None
                if proxy.delay:
                    time.sleep(proxy.delay)
                if kind in _ERRORS:
                    return self._error(*_ERRORS[kind])
                if kind == "echo":
                    # An endpoint that refuses with what it was sent: the session token.
                    token = self.headers.get("X-Amz-Security-Token", "")
                    return self._error(400, "NotAuthorizedException", f"bad token {token}")
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
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                try:
                    status, response_headers, payload = proxy._answer(
                        operation, self.path, headers, body
                    )
                except (OSError, http.client.HTTPException):  # the emulator went away: drop it
                    self.close_connection = True
                    return None
                if kind == "repeat_token":
                    payload = self._repeat_token(body, payload)
                self.send_response(status)
                for name, value in response_headers:
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
