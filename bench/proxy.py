"""A delaying HTTP proxy: adds a fixed latency to every request and logs when each arrived.

Put between the wrapper and the emulator (``endpoint_url``) to see how a scan behaves
with AWS-like round trips, and to count how many requests any one second really saw.
"""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class DelayingProxy:
    def __init__(self, upstream: str, delay: float):
        self.upstream = urlsplit(upstream)
        self.delay = delay
        self.arrivals: list[tuple[float, str]] = []  # (time.monotonic(), X-Amz-Target)
        self._lock = threading.Lock()
        self._local = threading.local()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
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

    def max_per_second(self, target: str | None = None) -> int:
        """The most requests that arrived within any one-second window."""
        with self._lock:
            stamps = sorted(t for t, name in self.arrivals if target is None or target in name)
        best, start = 0, 0
        for end, stamp in enumerate(stamps):
            while stamp - stamps[start] >= 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best

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

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy._lock:
                    proxy.arrivals.append((time.monotonic(), self.headers.get("X-Amz-Target", "")))
                time.sleep(proxy.delay)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                status, response_headers, payload = proxy._forward("POST", self.path, headers, body)
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
