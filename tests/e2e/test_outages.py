"""Outages against a real gunicorn: say so with 503, never lose data silently, start and stop in one line."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlparse, urlunparse

import pytest
import requests

from tests.core.test_outages import HungServer, closed_port
from tests.support.config import write_config
from tests.support.databases import POSTGRES_URL, database_url
from tests.support.server import ROOT, GunicornServer
from tests.support.wait import wait_until


def assert_unavailable(response):
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) >= 1


def run_to_exit(command: list[str], env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def one_clear_line(result: subprocess.CompletedProcess, *fragments: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("lockgate: ")]
    assert len(lines) == 1, output
    for fragment in fragments:
        assert fragment in lines[0], output


def flask_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "wsgi", *args]


# ---- a SQLite file deleted while serving ----------------------------------------------------------


def test_a_deleted_sqlite_file_is_noticed_by_every_worker_and_never_recreated(tmp_path):
    server = GunicornServer(tmp_path, workers=2).start()
    try:
        headers = server.headers("admin")
        created = requests.post(f"{server.url}/api/v1/sessions", headers=headers,
                                json={"channel": "api", "user_id": "me"}, timeout=10)
        assert created.status_code == 201, created.text
        path = urlparse(server.database_url).path
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.unlink(path + suffix)

        # Every request, whichever worker answers it: 503, never a 401 from a worker on an empty database.
        answers = [requests.get(f"{server.url}/api/v1/status", headers=headers, timeout=10) for _ in range(30)]
        for answer in answers:
            assert_unavailable(answer)
        assert_unavailable(requests.post(f"{server.url}/api/v1/sessions", headers=headers,
                                         json={"channel": "api", "user_id": "me"}, timeout=10))
        assert requests.get(f"{server.url}/api/v1/status/health", timeout=10).status_code == 503

        # A worker that dies is replaced by one that does not create a fresh database either.
        before = set(server.worker_pids())
        os.kill(min(before), signal.SIGKILL)
        wait_until(lambda: len(set(server.worker_pids()) - before) == 1, 30, 0.1, "a respawned worker")
        time.sleep(1.0)  # the new worker has loaded the application
        for _ in range(20):
            assert_unavailable(requests.get(f"{server.url}/api/v1/status", headers=headers, timeout=10))
        assert not os.path.exists(path)
    finally:
        server.stop()

    # Restarting the service refuses in one line, and so does the `db upgrade` run before every start;
    # `db upgrade --create-empty` is the way to an empty database.
    one_clear_line(run_to_exit(server.command, server.env), "is missing", "--create-empty")
    refused = run_to_exit(flask_command("db", "upgrade"), server.env)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr and "is missing" in refused.stderr
    assert not os.path.exists(path)
    upgraded = run_to_exit(flask_command("db", "upgrade", "--create-empty"), server.env)
    assert upgraded.returncode == 0 and upgraded.stdout.startswith("applied m0001"), upgraded.stdout + upgraded.stderr
    server.start()
    try:
        assert requests.get(f"{server.url}/api/v1/status/health", timeout=10).json() == {"healthy": True}
    finally:
        server.stop()


# ---- PostgreSQL unreachable -----------------------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; ``cut()`` drops every connection and refuses new ones till ``restore()``."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_off = False
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                # A cut while this connection was being made must drop it too.
                if self.cut_off:
                    client.close()
                    upstream.close()
                    continue
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket):
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (b if sock is a else a).sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()

    def cut(self):
        with self._lock:
            self.cut_off = True
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            for sock in (client, upstream):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def restore(self):
        self.cut_off = False

    def close(self):
        self.cut()
        self.listener.close()


def through(url: str, port: int) -> str:
    parsed = urlparse(url)
    netloc = f"{parsed.username}@127.0.0.1:{port}" if parsed.username else f"127.0.0.1:{port}"
    return urlunparse(parsed._replace(netloc=netloc))


ROUTES = [("GET", "/api/v1/status"), ("GET", "/api/v1/sessions"), ("POST", "/api/v1/sessions"),
          ("GET", "/api/v1/config"), ("GET", "/api/v1/logs"), ("GET", "/api/v1/hooks")]


def every_route_unavailable(server: GunicornServer, headers: dict) -> None:
    for method, path in ROUTES:
        assert_unavailable(requests.request(method, f"{server.url}{path}", headers=headers,
                                            json={"channel": "api", "user_id": "me"}, timeout=15))
    assert requests.get(f"{server.url}/api/v1/status/health", timeout=15).status_code == 503


# A closed port always; a live PostgreSQL cut and restored when the suite has one (CI always does).
UPSTREAMS = ["closed_port"] + (["postgresql"] if POSTGRES_URL else [])


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_unreachable_postgresql_answers_503_on_every_route_and_recovers_by_itself(tmp_path, upstream):
    if upstream == "closed_port":
        unreachable_from_the_start(tmp_path)
    else:
        cut_and_restored(tmp_path)


def unreachable_from_the_start(tmp_path):
    """Workers boot (a respawn during an outage must not stop the service) and answer 503."""
    url = f"postgresql://lockgate@127.0.0.1:{closed_port()}/lockgate"
    server = GunicornServer(tmp_path, url, workers=1, health_path="/api/v1/openapi.json").start()
    try:
        every_route_unavailable(server, {"Authorization": f"Bearer lgt_{'0' * 16}_{'x' * 43}"})
        assert "[WARNING] http: database unavailable" in server.log()
    finally:
        server.stop()


def cut_and_restored(tmp_path):
    target = urlparse(POSTGRES_URL)
    proxy = TcpProxy((target.hostname or "127.0.0.1", target.port or 5432))
    with database_url("postgresql", tmp_path) as url:
        server = GunicornServer(tmp_path, through(url, proxy.port), workers=2).start()
        try:
            headers = server.headers("admin")
            assert requests.get(f"{server.url}/api/v1/status", headers=headers, timeout=10).status_code == 200
            proxy.cut()
            every_route_unavailable(server, headers)
            proxy.restore()
            wait_until(lambda: all(requests.get(f"{server.url}/api/v1/status", headers=headers, timeout=10)
                                   .status_code == 200 for _ in range(6)), 30, 0.5, "recovery after the cut")
            created = requests.post(f"{server.url}/api/v1/sessions", headers=headers,
                                    json={"channel": "api", "user_id": "me"}, timeout=10)
            assert created.status_code == 201, created.text
        finally:
            server.stop()
            proxy.close()


# ---- a Redis that accepts and never answers -----------------------------------------------------


def test_a_hung_redis_adds_one_bounded_timeout_then_nothing(tmp_path):
    hung = HungServer()
    # The health probe counts too; the breaker opens on the first one of start-up.
    server = GunicornServer(tmp_path, workers=1, config={"redis": {"url": hung.url, "timeout_secs": 0.25}}).start()
    try:
        headers = server.headers("read")
        time.sleep(5.5)  # the breaker closes again (STORAGE_RETRY_SECONDS)
        connections = hung.connections
        started = time.monotonic()
        first = requests.get(f"{server.url}/api/v1/status", headers=headers, timeout=10)
        first_took = time.monotonic() - started
        assert first.status_code == 200
        assert "X-RateLimit-Limit" not in first.headers  # uncounted, and says so by leaving the headers out
        assert first_took < 1.0, first_took

        started = time.monotonic()
        later = [requests.get(f"{server.url}/api/v1/status", headers=headers, timeout=10) for _ in range(20)]
        later_took = time.monotonic() - started
        assert all(answer.status_code == 200 for answer in later)
        assert later_took < first_took + 1.0 and later_took / 20 < 0.1, later_took
        assert hung.connections == connections + 1  # one attempt, then the breaker kept Redis out of it
        report = later[-1].json()["rate_limits"]
        assert report["on_storage_error"] == "allow" and report["storage_errors"] >= 21
        assert "rate-limit storage failed" in server.log()
    finally:
        server.stop()
        hung.close()


def test_a_hung_redis_with_deny_answers_503(tmp_path):
    hung = HungServer()
    server = GunicornServer(tmp_path, workers=1, config={"redis": {"url": hung.url, "timeout_secs": 0.25}}).start()
    try:
        # Nothing would answer 200 under deny, not even the readiness probe: switch once started (a hot key).
        server.config["rate_limits"] = {"on_storage_error": "deny"}
        write_config(server.config_path, server.config)
        headers = server.headers("read")
        for _ in range(5):
            assert_unavailable(requests.get(f"{server.url}/api/v1/status", headers=headers, timeout=10))
        assert requests.get(f"{server.url}/api/v1/status/health", timeout=10).status_code == 503
    finally:
        server.stop()
        hung.close()


# ---- an unusable data directory at start-up -------------------------------------------------------


@pytest.mark.parametrize("layout,fragment", [("file", "is not a directory"), ("under_file", "cannot be created")])
def test_an_unusable_data_directory_stops_gunicorn_and_the_cli_in_one_line(tmp_path, layout, fragment):
    # Root ignores permission bits, so a mode 0555 directory would still be writable here:
    # a regular file where the directory is expected fails for every user.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    data_dir = blocker if layout == "file" else blocker / "data"
    server = GunicornServer(tmp_path / "server")
    env = {**server.env, "LOCKGATE_DATA_DIR": str(data_dir)}

    started = time.monotonic()
    one_clear_line(run_to_exit(server.command, env), f"data directory {data_dir}", fragment)
    assert time.monotonic() - started < 30
    for args in (("db", "upgrade"), ("auth", "list")):
        one_clear_line(run_to_exit(flask_command(*args), env), f"data directory {data_dir}", fragment)


# ---- Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_stops_quietly_with_streams_open(tmp_path):
    server = GunicornServer(tmp_path, workers=2).start()
    headers = server.headers("read")
    streams = [requests.get(f"{server.url}/api/v1/logs/stream", headers=headers, stream=True, timeout=30)
               for _ in range(3)]
    assert all(stream.status_code == 200 for stream in streams)
    os.killpg(server.process.pid, signal.SIGINT)  # what a terminal does on Ctrl-C: the whole process group
    code = server.process.wait(30)
    for stream in streams:
        stream.close()
    log = server.log()
    assert code == 0, log
    assert "Traceback" not in log and "SystemExit" not in log, log
    assert "Shutting down: Master" in log
