"""A delaying HTTP proxy: adds a fixed latency to every request and logs when each arrived.

Put between the wrapper and the emulator (``endpoint_url``) to see how a scan behaves
with AWS-like round trips, and to count how many requests any one second really saw.

Arrival times are the kernel's: when a request's first bytes reached the proxy's socket
(:func:`arrival`), not when a proxy thread got round to reading them, which on a busy
machine is up to 100 ms and more later and would make the proxy's own delays look like
the wrapper's bursts.

With ``replay``, a ListUsers request the proxy has answered before is answered again from
its memory (after the same delay), never asked of the emulator: after a warm-up scan, every
request then takes the delay and nothing else, so what limits a scan is the wrapper, not
the emulator's own time per page.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

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
    # Every scan worker of eight sessions may connect at once: a backlog of 5 (the default)
    # drops connections, whose retried SYN then arrives a second late.
    request_queue_size = 256


class DelayingProxy:
    def __init__(self, upstream: str, delay: float, replay: bool = False):
        self.upstream = urlsplit(upstream)
        self.delay = delay
        self.replay = replay
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), X-Amz-Target)
        self._answers: dict[bytes, tuple] = {}  # ListUsers request body -> answer
        self._lock = threading.Lock()
        self._local = threading.local()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> DelayingProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def clear(self) -> None:
        with self._lock:
            self.arrivals.clear()

    def count(self, target: str) -> int:
        """How many requests whose X-Amz-Target contains ``target`` arrived."""
        with self._lock:
            return sum(1 for _, name in self.arrivals if target in name)

    def stamps(self, target: str | None = None) -> list[float]:
        """When the requests whose X-Amz-Target contains ``target`` arrived, ascending."""
        with self._lock:
            return sorted(t for t, name in self.arrivals if target is None or target in name)

    def max_per_second(self, target: str | None = None) -> int:
        """The most requests that arrived within any one-second window."""
        return most_in_one_second(self.stamps(target))

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port)
            self._local.conn = conn
        return conn

    def _forward(self, method, path, headers, body):
        try:
            conn = self._connection()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        except (ConnectionError, http.client.HTTPException):
            self._local.conn = None
            conn = self._connection()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()

    def _answer(self, path: str, target: str, headers, body):
        if not (self.replay and target.endswith(".ListUsers")):
            return self._forward("POST", path, headers, body)
        # botocore serialises the same parameters to the same bytes: the body is the key.
        answer = self._answers.get(body)
        if answer is None:
            answer = self._forward("POST", path, headers, body)
            if answer[0] == 200:
                self._answers[body] = answer
        return answer

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                stamp_arrivals(self.connection)

            def handle_one_request(self):
                self.arrived = arrival(self.connection)
                super().handle_one_request()

            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                target = self.headers.get("X-Amz-Target", "")
                with proxy._lock:
                    proxy.arrivals.append((self.arrived, target))
                time.sleep(proxy.delay)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                status, response_headers, payload = proxy._answer(self.path, target, headers, body)
                self.send_response(status)
                for name, value in response_headers:
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        return Handler
