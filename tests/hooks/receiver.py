"""A real webhook receiver for tests: records every request, answers as scripted.

It runs a threaded ``http.server`` on 127.0.0.1 (port chosen by the OS).
Each path has a script of answers, ``(status, delay_seconds)``, consumed one
per request; when it runs out the path's default answer applies.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes
    started: float  # time.time() when the request arrived
    finished: float = 0.0  # when the answer was sent

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    def verify(self, secret: str) -> dict:
        """The parsed body, after checking the signature as a receiver would."""
        return Webhook(secret).verify(self.body, self.headers)


@dataclass
class _Answer:
    status: int = 200
    delay: float = 0.0
    headers: dict = field(default_factory=dict)


class Receiver:
    def __init__(self):
        self._lock = threading.Condition()
        self.requests: list[Received] = []
        self._scripts: dict[str, deque] = defaultdict(deque)
        self._defaults: dict[str, _Answer] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- scripting -------------------------------------------------------------

    def script(self, path: str, *statuses: int, delay: float = 0.0, headers: dict | None = None) -> None:
        """Answer the next requests to ``path`` with these statuses, in order."""
        with self._lock:
            for status in statuses:
                self._scripts[path].append(_Answer(status, delay, headers or {}))

    def default(self, path: str, status: int = 200, delay: float = 0.0) -> None:
        """Answer every unscripted request to ``path`` like this."""
        with self._lock:
            self._defaults[path] = _Answer(status, delay)

    def _answer_for(self, path: str) -> _Answer:
        with self._lock:
            if self._scripts[path]:
                return self._scripts[path].popleft()
            return self._defaults.get(path, _Answer())

    # ---- observing ---------------------------------------------------------------

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def wait_for(self, predicate, timeout: float = 15.0, path: str | None = None) -> list[Received]:
        """Block until ``predicate(requests)`` holds for the requests to ``path``; fail at the deadline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                requests = [r for r in self.requests if path is None or r.path == path]
                if predicate(requests):
                    return requests
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"receiver: condition not met in {timeout}s; got {len(requests)} "
                                         f"requests: {[(r.path, r.webhook_id) for r in requests]}")
                self._lock.wait(remaining)

    def wait_count(self, count: int, timeout: float = 15.0, path: str | None = None) -> list[Received]:
        return self.wait_for(lambda requests: len(requests) >= count, timeout, path)

    def _handler_class(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                started = time.time()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                record = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, started)
                answer = receiver._answer_for(self.path)
                with receiver._lock:
                    receiver.requests.append(record)
                    receiver._lock.notify_all()
                if answer.delay:
                    time.sleep(answer.delay)
                payload = b'{"ok": true}' if answer.status < 300 else b'{"error": "scripted"}'
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the sender gave up (timeout) or died
                record.finished = time.time()

            def log_message(self, *args):
                pass

        return Handler
