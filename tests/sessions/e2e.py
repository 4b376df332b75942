"""Helpers for the end-to-end session tests (tests/e2e/test_sessions*.py)."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

import requests

from tests.sessions.helpers import parse_sse
from tests.support.databases import database_url
from tests.support.server import GunicornServer

# Session writes are limited to 10/s per token by default; the tests send more.
RELAXED_LIMITS = {"rate_limits": {"sessions_write": "10000/s", "sessions_read": "10000/s", "default": "10000/s"}}


@contextmanager
def gateway(tmp_path_factory, backend, config: dict):
    """A gunicorn server with 2 workers on a fresh database, for a whole test module."""
    tmp = tmp_path_factory.mktemp("sessions")
    merged = {**RELAXED_LIMITS, **config}
    with database_url(backend, tmp) as url:
        server = GunicornServer(tmp, url, merged).start()
        try:
            yield server
        finally:
            server.stop()


class Api:
    """Thin requests wrapper: base URL, token, and JSON bodies."""

    def __init__(self, server: GunicornServer, scope: str = "admin"):
        self.server = server
        self.headers = server.headers(scope)
        self.http = requests.Session()

    def close(self) -> None:
        # Open keep-alive connections would make the server's graceful stop wait for them.
        self.http.close()

    def url(self, path: str) -> str:
        return f"{self.server.url}/api/v1{path}"

    def get(self, path: str, **params) -> requests.Response:
        return self.http.get(self.url(path), params=params, headers=self.headers, timeout=30)

    def post(self, path: str, body: dict | None = None, headers: dict | None = None, **options):
        return self.http.post(self.url(path), json=body if body is not None else {},
                              headers={**self.headers, **(headers or {})}, timeout=30, **options)

    def delete(self, path: str) -> requests.Response:
        return self.http.delete(self.url(path), headers=self.headers, timeout=30)

    def patch(self, path: str, body: dict) -> requests.Response:
        return self.http.patch(self.url(path), json=body, headers=self.headers, timeout=30)

    def new_session(self, **body) -> dict:
        response = self.post("/sessions", body)
        assert response.status_code == 201, response.text
        return response.json()

    def send(self, session_id: str, content: str) -> requests.Response:
        # One connection per call, so concurrent senders do not share a socket.
        return requests.post(self.url(f"/sessions/{session_id}/messages"), json={"content": content},
                             headers=self.headers, timeout=60)

    def stream(self, session_id: str, content: str) -> list[tuple[str, dict]]:
        with requests.post(self.url(f"/sessions/{session_id}/messages"), json={"content": content},
                           headers={**self.headers, "Accept": "text/event-stream"}, stream=True,
                           timeout=60) as response:
            assert response.status_code == 200, response.text
            assert response.headers["Content-Type"].startswith("text/event-stream")
            return parse_sse(response.iter_lines(decode_unicode=True))

    def session(self, session_id: str) -> dict:
        response = self.get(f"/sessions/{session_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def transcript(self, session_id: str) -> list[dict]:
        response = self.get(f"/sessions/{session_id}/messages", limit=200)
        assert response.status_code == 200, response.text
        return response.json()["messages"]


def wait_for(check, timeout: float = 10.0, interval: float = 0.05):
    """Poll until ``check()`` returns something truthy; return it, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def _socket_inodes(port: int, side: str) -> set[str]:
    """Inodes of established TCP sockets whose local or remote port is ``port``."""
    column = 1 if side == "local" else 2
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[column].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _pids_holding(pids: list[int], inodes: set[str]) -> list[int]:
    holding = []
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except (FileNotFoundError, PermissionError):
            continue
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            holding.append(pid)
    return holding


def workers_calling(server: GunicornServer, port: int) -> list[int]:
    """Workers with an open connection to a server on ``port`` (the fake LLM)."""
    return _pids_holding(server.worker_pids(), _socket_inodes(port, "remote"))


def workers_serving(server: GunicornServer) -> list[int]:
    """Workers holding client connections right now."""
    return _pids_holding(server.worker_pids(), _socket_inodes(server.port, "local"))
