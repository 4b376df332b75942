"""HTTP details against real gunicorn processes with two workers: the 401 challenge, the
per-token stream cap counted across workers, a client that stops reading losing its stream,
and a dashboard tailing the logs at info seeing the service work."""

import socket
import time

import pytest
import requests

from tests.support.http import assert_envelope, fresh_get
from tests.support.server import free_port, insert_logs
from tests.support.sse import SseStream
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e

CHALLENGE = 'Bearer realm="lockgate"'
INVALID = 'Bearer realm="lockgate", error="invalid_token"'


def test_every_401_carries_the_bearer_challenge(server):
    url = f"{server.url}/api/v1/status"
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}):
        response = fresh_get(url, headers=headers)
        assert_envelope(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == CHALLENGE
    revoked = server.cli_token("read", name="to-revoke")
    server.flask("auth", "revoke", revoked.split("_")[1])
    for token in ("not-a-token", f"lgt_0000000000000000_{'A' * 43}", revoked):
        response = fresh_get(url, headers={"Authorization": f"Bearer {token}"})
        assert_envelope(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"] == INVALID
    token = server.token("read")
    for scheme in ("bearer", "BEARER", "Bearer"):
        assert fresh_get(url, headers={"Authorization": f"{scheme} {token}"}).status_code == 200


# ---- the stream cap --------------------------------------------------------------


def _open(server, token, path="/api/v1/logs/stream"):
    return SseStream(server.url, path, {"Authorization": f"Bearer {token}"}, {"module": "nothing"})


def _status(server):
    return fresh_get(f"{server.url}/api/v1/status", headers=server.headers("read")).json()


def test_the_stream_cap_holds_across_workers_and_frees_closed_slots(server_factory):
    server = server_factory({"gateway": {"max_streams_per_token": 3}, "logs": {"heartbeat_secs": 0.2},
                             "rate_limits": {"default": "1000/s", "sessions_write": "1000/s"}})
    token, other = server.token("write"), server.token("read")
    opened = [_open(server, token) for _ in range(3)]
    try:
        assert [s.status for s in opened] == [200, 200, 200]
        # Each attempt is a new connection: counted per worker, some would land where two slots are free.
        for _ in range(6):
            refused = _open(server, token)
            assert refused.status == 429 and refused.headers["retry-after"] == "5"
            refused.close()
        response = fresh_get(f"{server.url}/api/v1/logs/stream", headers={"Authorization": f"Bearer {token}"})
        error = assert_envelope(response, 429, "rate_limited")
        assert error["details"] == {"max_streams_per_token": 3, "open": 3}

        session = requests.post(f"{server.url}/api/v1/sessions", json={"channel": "api"},
                                headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
        refused = requests.post(f"{server.url}/api/v1/sessions/{session['id']}/messages", json={"content": "hi"},
                                headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
                                timeout=10)
        assert_envelope(refused, 429, "rate_limited")
        transcript = fresh_get(f"{server.url}/api/v1/sessions/{session['id']}/messages",
                               headers={"Authorization": f"Bearer {token}"}).json()
        assert transcript["total"] == 0

        unaffected = _open(server, other)
        assert unaffected.status == 200
        unaffected.close()
        assert _status(server)["streams"]["open"] >= 3

        opened.pop().close()

        def reopened():
            stream = _open(server, token)
            if stream.status == 200:
                return stream
            stream.close()
            return None

        # The server notices the client went at its next heartbeat.
        opened.append(wait_until(reopened, timeout=10, interval=0.2, message="a slot freed by a closed stream"))
    finally:
        for stream in opened:
            stream.close()
    wait_until(lambda: _status(server)["streams"]["open"] == 0, timeout=10, interval=0.2,
               message="every slot freed once the streams closed")


# ---- a client that stops reading -----------------------------------------------


def _open_without_reading(server, token) -> socket.socket:
    sock = socket.socket()
    # A small receive window: the server's writes block soon, as with a stalled client.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall((f"GET /api/v1/logs/stream?module=flood HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                  f"Accept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n").encode())
    head = b""
    while b"retry: 2000" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200")
    return sock


def _read_to_end(sock: socket.socket, timeout: float) -> bool:
    """Drain the socket; True when the server ended the connection within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            if not sock.recv(1 << 20):
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
    return False


def test_a_client_that_stops_reading_loses_its_stream_and_the_drop_is_counted(server_factory):
    server = server_factory({"gateway": {"max_stream_backlog": 100}, "logs": {"heartbeat_secs": 1}})
    sock = _open_without_reading(server, server.token("read"))
    try:
        assert _status(server)["streams"] == {"open": 1, "dropped_slow": 0}
        insert_logs(server.database_url, [f"{n} {'x' * 1000}" for n in range(30_000)], module="flood")
        wait_until(lambda: _status(server)["streams"] == {"open": 0, "dropped_slow": 1}, timeout=30,
                   interval=0.2, message="the stalled stream closed and counted")
        assert _read_to_end(sock, timeout=30), "the server kept the stalled connection open"
    finally:
        sock.close()
    # A reading client is served as before.
    stream = SseStream(server.url, "/api/v1/logs/stream", server.headers("read"), {"module": "flood", "since": "1h"})
    try:
        assert stream.next_event().event == "log"
    finally:
        stream.close()
    assert "Socket error processing request" not in server.log()


# ---- a dashboard following the service at info -----------------------------------


def test_a_dashboard_tailing_info_sees_the_service_work(server_factory):
    closed_port = free_port()  # nothing listens there: every delivery fails at once
    server = server_factory({
        "logs": {"level": "info"},
        "hooks": {"allow_private_targets": True, "retry_schedule": ["100ms"], "disable_after_failures": 1},
    })
    headers = server.headers("admin")
    tail = SseStream(server.url, "/api/v1/logs/stream", headers, {"level": "info"}, timeout=30)
    try:
        api = f"{server.url}/api/v1"
        hook = requests.post(f"{api}/hooks", json={"url": f"http://127.0.0.1:{closed_port}/hook",
                                                     "events": ["session.created"]}, headers=headers, timeout=10).json()
        session = requests.post(f"{api}/sessions", json={"channel": "api"}, headers=headers, timeout=10).json()
        assert requests.delete(f"{api}/sessions/{session['id']}", headers=headers, timeout=10).status_code == 204
        assert requests.patch(f"{api}/config", json={"memory.top_k": 4}, headers=headers, timeout=10).ok
        token = server.cli_token("read", name="dashboard-made")
        token_id = token.split("_")[1]
        server.flask("auth", "revoke", token_id)

        expected = {
            ("session", f"session {session['id']} created on channel api"),
            ("session", f"session {session['id']} terminated (deleted)"),
            ("hooks::delivery", f"hook {hook['id']} registered for http://127.0.0.1:{closed_port}/hook"),
            ("hooks::delivery", f"hook {hook['id']} (http://127.0.0.1:{closed_port}/hook) disabled"),
            ("config", "configuration updated: memory.top_k"),
            ("auth", f"token {token_id} created (dashboard-made; scopes: read; expires: never)"),
            ("auth", f"token {token_id} revoked"),
        }
        seen = []

        def all_seen(event):
            entry = event.json()
            seen.append(entry)
            return all(any(e["module"] == module and e["message"].startswith(text) for e in seen)
                       for module, text in expected)

        tail.events_until(all_seen)
        missing = [item for item in expected
                   if not any(e["module"] == item[0] and e["message"].startswith(item[1]) for e in seen)]
        assert missing == [], [(e["module"], e["message"]) for e in seen]
        assert any(e["module"] == "hooks::delivery" and "failed" in e["message"] for e in seen)
    finally:
        tail.close()
    # The same lines are in the stored log; successful requests stay at debug.
    entries = fresh_get(f"{server.url}/api/v1/logs", headers=headers, params={"level": "info", "limit": 1000}).json()
    modules = {e["module"] for e in entries["entries"]}
    assert {"session", "hooks::delivery", "config", "auth"} <= modules
    assert not [e for e in entries["entries"] if e["module"] == "http" and " 20" in e["message"]]
