"""HTTP details clients and their tools rely on, in process: the 401 challenge, the per-token
cap on event streams counted in the database, slow streams closed and counted, and the
service's work logged at info under PRX-style module names."""

import logging
import socket
import ssl
import threading
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest

from app.core import sse, streams
from app.core.auth import create_token, revoke
from app.core.db import connection, utcnow
from app.core.streams import StreamSlot

CHALLENGE = 'Bearer realm="lockgate"'
INVALID = 'Bearer realm="lockgate", error="invalid_token"'


# ---- the 401 challenge ---------------------------------------------------------


def test_401_without_a_token_carries_the_bare_challenge(client):
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}):
        response = client.get("/api/v1/status", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == CHALLENGE
        assert response.json["error"]["code"] == "unauthorized"


def test_401_for_a_refused_token_says_invalid_token(app, client, tokens):
    with connection():
        expired = create_token("expired", ["read"], timedelta(seconds=-1))[1]
        revoked_row, revoked = create_token("revoked", ["read"])
        revoke(revoked_row.id)
    forged = tokens["read"][:-4] + ("AAAA" if not tokens["read"].endswith("AAAA") else "BBBB")
    for token in ("garbage", forged, expired, revoked):
        response = client.get("/api/v1/status", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        assert response.headers["WWW-Authenticate"] == INVALID
        assert response.json["error"]["message"] == "The bearer token is not valid: unknown, expired or revoked"


def test_the_scheme_is_case_insensitive(client, tokens):
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        response = client.get("/api/v1/status", headers={"Authorization": f"{scheme} {tokens['read']}"})
        assert response.status_code == 200, scheme
    assert client.get("/api/v1/status", headers={"Authorization": f"bearer   {tokens['read']}  "}).status_code == 200


def test_403_carries_no_challenge(client, auth):
    response = client.patch("/api/v1/config", json={"memory.top_k": 4}, headers=auth("read"))
    assert response.status_code == 403
    assert "WWW-Authenticate" not in response.headers


# ---- the per-token stream cap --------------------------------------------------


@pytest.fixture
def capped(app_factory):
    return app_factory({"gateway": {"max_streams_per_token": 3}, "logs": {"heartbeat_secs": 0.1}})


def _close_all(responses):
    # Last opened first: in one thread, each open stream holds its request context pushed on the previous one's.
    for response in reversed(responses):
        response.close()


def _open_log_stream(client, token):
    return client.get("/api/v1/logs/stream", headers={"Authorization": f"Bearer {token}"}, buffered=False)


def test_streams_beyond_the_cap_are_429_and_a_closed_stream_frees_its_slot(capped):
    client = capped.test_client()
    with connection():
        first, second = create_token("one", ["read"])[1], create_token("two", ["read"])[1]
    opened = [_open_log_stream(client, first) for _ in range(3)]
    try:
        assert [r.status_code for r in opened] == [200, 200, 200]
        refused = _open_log_stream(client, first)
        assert refused.status_code == 429
        assert refused.json["error"]["code"] == "rate_limited"
        assert refused.json["error"]["details"] == {"max_streams_per_token": 3, "open": 3}
        assert refused.headers["Retry-After"] == str(streams.RETRY_AFTER_SECS)
        other = _open_log_stream(client, second)
        assert other.status_code == 200
        other.close()
        opened.pop().close()
        again = _open_log_stream(client, first)
        assert again.status_code == 200
        opened.append(again)
    finally:
        _close_all(opened)
    with connection():
        assert StreamSlot.select().count() == 0


def test_message_streams_share_the_cap_and_a_refused_one_stores_nothing(capped):
    client = capped.test_client()
    with connection():
        token = create_token("writer", ["write"])[1]
    headers = {"Authorization": f"Bearer {token}"}
    session = client.post("/api/v1/sessions", json={"channel": "api"}, headers=headers).json
    opened = [_open_log_stream(client, token) for _ in range(3)]
    try:
        refused = client.post(f"/api/v1/sessions/{session['id']}/messages", json={"content": "hi"},
                              headers={**headers, "Accept": "text/event-stream"})
        assert refused.status_code == 429
        assert client.get(f"/api/v1/sessions/{session['id']}/messages", headers=headers).json["total"] == 0
    finally:
        _close_all(opened)
    answered = client.post(f"/api/v1/sessions/{session['id']}/messages", json={"content": "hi"},
                           headers={**headers, "Accept": "text/event-stream"})
    assert answered.status_code == 200
    assert "event: done" in answered.get_data(as_text=True)
    answered.close()  # as every WSGI server does once the body is sent
    with connection():
        assert StreamSlot.select().count() == 0


def test_slots_of_other_workers_count_until_they_lapse(app):
    with connection():
        StreamSlot.create(id="elsewhere", token_id="tok", owner="other-host:1:dead", opened_at=utcnow(),
                          expires_at=utcnow() + timedelta(seconds=30))
        mine = streams.acquire("tok", 2)
        with pytest.raises(Exception) as refused:
            streams.acquire("tok", 2)
        assert refused.value.status == 429
        # The other worker died: its row is no longer renewed and lapses.
        StreamSlot.update(expires_at=utcnow() - timedelta(seconds=1)).where(StreamSlot.id == "elsewhere").execute()
        replacement = streams.acquire("tok", 2)
        assert StreamSlot.get_or_none(StreamSlot.id == "elsewhere") is None
        mine.release()
        replacement.release()
        mine.release()  # a second release is harmless
        assert StreamSlot.select().count() == 0


def test_renewal_pushes_back_the_expiry_of_open_slots_only(app):
    with connection():
        slot = streams.acquire("tok", 5)
        StreamSlot.create(id="released-elsewhere", token_id="tok", owner="x", opened_at=utcnow(),
                          expires_at=utcnow() + timedelta(seconds=1))
        StreamSlot.update(expires_at=utcnow() + timedelta(seconds=1)).where(StreamSlot.id == slot.id).execute()
        assert streams.renew() == 1
        renewed = StreamSlot.get_by_id(slot.id).expires_at
        assert renewed > utcnow() + streams.TTL - timedelta(seconds=5)
        assert StreamSlot.get_by_id("released-elsewhere").expires_at < utcnow() + timedelta(seconds=2)
        slot.release()


def test_concurrent_claims_never_exceed_the_cap(app):
    granted, refused = [], []
    barrier = threading.Barrier(8)

    def claim():
        barrier.wait()
        try:
            with connection():
                granted.append(streams.acquire("busy-token", 3))
        except Exception as exc:
            refused.append(exc.status)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(granted) == 3 and refused == [429] * 5
    with connection():
        assert StreamSlot.select().where(StreamSlot.token_id == "busy-token").count() == 3
        for slot in granted:
            slot.release()


# ---- slow clients ----------------------------------------------------------------


def _rows(first: int, count: int) -> list[SimpleNamespace]:
    return [SimpleNamespace(id=n) for n in range(first, first + count)]


def test_an_overflowing_queue_closes_the_stream_and_counts_the_drop(app, client, auth):
    with sse.Subscription(max_backlog=10) as subscription:
        assert subscription.go_live(0)
        subscription.put(_rows(1, 6))
        subscription.put(_rows(7, 6))  # 6 waiting: still under the bound
        assert not subscription.overflowed
        subscription.put(_rows(13, 6))  # 12 waiting: the reader is too far behind
        assert subscription.overflowed and subscription.closed
        assert subscription.get(0.1) == _rows(1, 6)
        assert subscription.get(0.1) == _rows(7, 6)
        with pytest.raises(StopIteration):
            subscription.get(0.1)
        subscription.put(_rows(19, 1))  # the tailer may still deliver: ignored
    status = client.get("/api/v1/status", headers=auth("read")).json
    assert status["streams"] == {"open": 0, "dropped_slow": 1}


def test_a_reader_keeping_up_is_never_dropped(app):
    with sse.Subscription(max_backlog=10) as subscription:
        assert subscription.go_live(0)
        for n in range(100):
            batch = _rows(n * 500 + 1, 500)
            subscription.put(batch)  # a batch bigger than the bound is fine when nothing waits
            assert subscription.get(0.1) == batch
        assert not subscription.overflowed
    with connection():
        assert streams.counts()["dropped_slow"] == 0


def test_a_stream_catching_up_queues_nothing_and_replays_until_it_reaches_the_tail(app):
    with sse.Subscription(max_backlog=10) as subscription:
        for n in range(50):
            subscription.put(_rows(n * 500 + 1, 500))  # a burst while the replay reads the database
        assert not subscription.overflowed
        assert subscription.get(0.01) is None  # the database holds them, not the queue
        assert not subscription.go_live(20_000)  # rows went by beyond what the replay reached
        assert subscription.go_live(25_000)
        subscription.put(_rows(25_001, 3))
        assert subscription.get(0.1) == _rows(25_001, 3)


def test_a_stream_whose_replay_write_stays_blocked_is_closed(app):
    with sse.Subscription(max_backlog=10) as subscription:
        writes = subscription.written("frame")
        assert next(writes) == "frame"  # the server is writing it to the client now
        subscription.put(_rows(1, 6))
        subscription.put(_rows(7, 6))
        assert not subscription.overflowed
        subscription.put(_rows(13, 6))  # 12 went by while one write was blocked
        assert subscription.overflowed and subscription.closed


def test_a_replay_write_that_completes_resets_the_count(app):
    with sse.Subscription(max_backlog=10) as subscription:
        for n in range(20):
            writes = subscription.written("frame")
            next(writes)
            subscription.put(_rows(n * 8 + 1, 8))
            next(writes, None)  # the write went through
        assert not subscription.overflowed


def test_a_live_stream_is_handed_only_what_it_renders(app):
    rendered = []

    def render(batch):
        rendered.append([row.id for row in batch])
        return "".join(f"{row.id}\n" for row in batch if row.id % 2 == 0)

    with sse.Subscription(max_backlog=10, render=render) as subscription:
        subscription.put(_rows(1, 3))  # catching up: the replay reads these from the database
        assert subscription.go_live(3)
        subscription.put(_rows(5, 1))  # nothing for this stream: it is not woken
        subscription.put(_rows(6, 3))
        assert rendered == [[5], [6, 7, 8]]
        assert subscription.writer is None  # a test client's request: yielded, not written to a socket
        assert subscription.get(0.1) == "6\n8\n"
        assert subscription.get(0.01) is None


def test_a_heartbeat_goes_only_to_a_live_stream_quiet_for_most_of_one(app):
    with sse.Subscription(max_backlog=10, render=lambda batch: "record\n", heartbeat=10) as subscription:
        subscription.beat(time.monotonic() + 60)
        assert subscription.get(0.01) is None  # catching up: its replay is writing
        assert subscription.go_live(0)
        now = time.monotonic()
        subscription.beat(now + 5)
        assert subscription.get(0.01) is None  # half a heartbeat: not yet
        subscription.beat(now + 8)
        assert subscription.get(0.1) == sse.comment()
        subscription.beat(now + 12)
        assert subscription.get(0.01) is None  # a heartbeat was just sent
        subscription.put(_rows(1, 1))
        subscription.beat(now + 60)  # a record waits to be written: it is sign of life enough
        assert subscription.get(0.1) == "record\n" and subscription.get(0.01) is None
        follow = subscription.follow()
        subscription.beat(time.monotonic() + 60)
        assert next(follow) == sse.comment()
        subscription.close()
        assert list(follow) == []


def test_a_stream_whose_render_fails_is_closed_and_the_others_go_on(app, caplog):
    def broken(batch):
        raise KeyError("level")

    with sse.Subscription(render=broken) as failing, sse.Subscription(render=lambda batch: "ok") as working:
        assert failing.go_live(0) and working.go_live(0)
        for subscription in (failing, working):
            subscription.put(_rows(1, 1))
        assert failing.closed and not failing.overflowed
        assert list(failing.follow()) == []
        assert working.get(0.1) == "ok"
    assert "stream closed: rendering a batch failed" in caplog.text


def test_streams_are_written_straight_to_the_socket_only_on_a_plain_non_blocking_one(monkeypatch):
    """Under gevent (a gunicorn worker) with the headers out; never on TLS, a blocking socket, or
    a server whose response object is not gunicorn's."""
    monkeypatch.setattr(sse, "gevent_patched", lambda: True)
    plain, peer = socket.socketpair()
    tls = ssl.create_default_context().wrap_socket(socket.socket(), server_hostname="localhost",
                                                   do_handshake_on_connect=False)
    try:
        plain.setblocking(False)
        tls.setblocking(False)

        def writer(sock=plain, chunked=True, headers_sent=True):
            return sse.SocketWriter.for_response(SimpleNamespace(sock=sock, chunked=chunked,
                                                                 headers_sent=headers_sent))

        assert writer().chunked and not writer(chunked=False).chunked
        assert writer(tls) is None
        assert writer(headers_sent=False) is None
        assert sse.SocketWriter.for_response(None) is None  # werkzeug's server: no response object
        plain.setblocking(True)
        assert writer() is None
        plain.setblocking(False)
        monkeypatch.setattr(sse, "gevent_patched", lambda: False)
        assert writer() is None

        chunked = sse.SocketWriter(plain, chunked=True)
        assert chunked.try_write(chunked.frame("data: é\n\n")) == b""
        assert chunked.try_write(sse.SocketWriter(plain, chunked=False).frame(": x\n\n")) == b""
        assert peer.recv(100) == b"A\r\ndata: \xc3\xa9\n\n\r\n: x\n\n"
        rest = chunked.try_write(b"z" * (64 << 20))  # more than the socket takes: the rest comes back
        assert 0 < len(rest) < 64 << 20
        peer.close()
        with pytest.raises(OSError):  # the client has gone
            for _ in range(10):
                chunked.try_write(b"z" * 65536)
    finally:
        for sock in (plain, peer, tls):
            sock.close()


def test_a_stream_that_cannot_begin_answers_in_the_error_envelope_and_frees_its_slot(capped, monkeypatch):
    from playhouse.pool import MaxConnectionsExceeded

    from app.logs import service

    def no_connection_free():
        raise MaxConnectionsExceeded("Max connections exceeded, timed out attempting to connect.")

    monkeypatch.setattr(service.tailer, "head", no_connection_free)  # the stream's first read
    client = capped.test_client()
    with connection():
        token = create_token("reader", ["read"])[1]
    refused = _open_log_stream(client, token)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert refused.json["error"]["code"] == "service_unavailable"
    with connection():
        assert StreamSlot.select().count() == 0


def test_a_stream_failing_once_begun_ends_cleanly_and_says_why(capped, monkeypatch, caplog):
    from app.core.db import DatabaseUnavailable
    from app.logs import service

    def unavailable(log_filter, cursor):
        raise DatabaseUnavailable("database unavailable: gone")
        yield  # a generator, as the replay is

    monkeypatch.setattr(service, "_replay", unavailable)
    client = capped.test_client()
    with connection():
        token = create_token("reader", ["read"])[1]
    with caplog.at_level(logging.WARNING, logger="http::sse"):
        # With a history to read back: the replay's read is what fails.
        response = client.get("/api/v1/logs/stream?since=1h", headers={"Authorization": f"Bearer {token}"},
                              buffered=False)
        assert response.status_code == 200
        assert response.get_data() == b"retry: 2000\n\n"  # then the end of the stream: the client reconnects
        response.close()
    assert [r.getMessage() for r in caplog.records if r.name == "http::sse"] == [
        "stream ended early: database unavailable (database unavailable: gone)"]
    with connection():
        assert StreamSlot.select().count() == 0


def test_status_counts_open_streams(capped):
    client = capped.test_client()
    with connection():
        token = create_token("reader", ["read"])[1]
    headers = {"Authorization": f"Bearer {token}"}
    opened = [_open_log_stream(client, token) for _ in range(2)]
    try:
        assert client.get("/api/v1/status", headers=headers).json["streams"] == {"open": 2, "dropped_slow": 0}
    finally:
        _close_all(opened)
    assert client.get("/api/v1/status", headers=headers).json["streams"]["open"] == 0


# ---- the service's work at info ----------------------------------------------------


def _records(caplog, name):
    return [r.getMessage() for r in caplog.records if r.name == name and r.levelno == logging.INFO]


def test_the_service_logs_its_work_at_info(app_factory, caplog):
    app = app_factory({"hooks": {"allow_private_targets": True}})
    client = app.test_client()
    caplog.set_level(logging.INFO)
    with connection():
        row, token = create_token("dashboard", ["admin"])
    headers = {"Authorization": f"Bearer {token}"}
    session = client.post("/api/v1/sessions", json={"channel": "api"}, headers=headers).json
    assert client.delete(f"/api/v1/sessions/{session['id']}", headers=headers).status_code == 204
    hook = client.post("/api/v1/hooks", json={"url": "http://127.0.0.1:9/hook", "events": ["session.created"]},
                       headers=headers).json
    assert client.patch("/api/v1/config", json={"memory.top_k": 4}, headers=headers).status_code == 200
    with connection():
        revoke(row.id)

    assert _records(caplog, "session") == [f"session {session['id']} created on channel api",
                                           f"session {session['id']} terminated (deleted)"]
    assert f"hook {hook['id']} registered for http://127.0.0.1:9/hook" in _records(caplog, "hooks::delivery")
    assert _records(caplog, "config") == ["configuration updated: memory.top_k"]
    created, revoked = _records(caplog, "auth")
    assert created == f"token {row.id} created (dashboard; scopes: admin; expires: never)"
    assert revoked == f"token {row.id} revoked"
    # Successful requests stay at debug.
    assert not [r for r in caplog.records if r.name == "http" and r.levelno >= logging.INFO]


def test_sessions_swept_idle_or_timed_out_are_logged(app, client, auth, caplog):
    from app.sessions import service

    caplog.set_level(logging.INFO)
    idle = client.post("/api/v1/sessions", json={"channel": "api"}, headers=auth("write")).json
    with connection():
        assert service.idle_inactive(utcnow() + timedelta(seconds=1)) == 1
        assert service.terminate_inactive(utcnow() + timedelta(seconds=1)) == 1
    assert _records(caplog, "session")[-2:] == [f"session {idle['id']} became idle (no activity)",
                                                f"session {idle['id']} terminated (timeout)"]


def test_provider_failures_are_logged_under_agent_provider(caplog):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from app.agent.providers.base import ProviderError, ProviderSettings
    from app.agent.providers.http import HttpClient

    class Upstream(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(int(self.path.strip("/")))
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "nope"}}')

        def log_message(self, *args):
            pass

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{upstream.server_address[1]}"
    client = HttpClient("openai", ProviderSettings(max_retries=1, retry_backoff=0.0, timeout=5))
    caplog.set_level(logging.INFO)
    try:
        for status in (503, 401):
            with pytest.raises(ProviderError):
                client.post_json(f"{base}/{status}", {}, {})
    finally:
        upstream.shutdown()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "agent::provider"]
    assert [level for level, _ in lines] == ["INFO", "WARNING", "WARNING"]
    assert "HTTP 503" in lines[0][1] and "retrying (attempt 1 of 2)" in lines[0][1]
    assert "HTTP 503" in lines[1][1] and "gave up after 2 attempts" in lines[1][1]
    assert "HTTP 401" in lines[2][1]
