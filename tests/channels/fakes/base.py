"""What the fake platforms share: a threaded HTTP server on 127.0.0.1 that can go away and come back."""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)  # a client cut short (a restart) is not news


class FakeHttp:
    """Subclasses implement ``route(method, path, params, headers) -> (status, body dict)``."""

    def __init__(self):
        self.port = 0
        self._server: _Server | None = None
        self.lock = threading.Condition()
        self.calls: list[tuple[str, dict]] = []  # (path, params) of every request, in order
        self.delays: dict[str, float] = {}  # path suffix -> seconds to wait before answering

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeHttp:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self, method):
                parts = urlsplit(self.path)
                params = dict(parse_qsl(parts.query))
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if raw:
                    if "json" in (self.headers.get("Content-Type") or ""):
                        params.update(json.loads(raw))
                    else:
                        params.update(parse_qsl(raw.decode()))
                with fake.lock:
                    fake.calls.append((parts.path, params))
                for suffix, seconds in list(fake.delays.items()):
                    if parts.path.endswith(suffix):
                        time.sleep(seconds)
                status, body = fake.route(method, parts.path, params, self.headers)
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a long poll cut short by a restart)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Go away: the port refuses connections until ``start()`` again (on the same port)."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def calls_to(self, suffix: str) -> list[dict]:
        with self.lock:
            return [params for path, params in self.calls if path.endswith(suffix)]

    def route(self, method: str, path: str, params: dict, headers) -> tuple[int, dict]:
        raise NotImplementedError
