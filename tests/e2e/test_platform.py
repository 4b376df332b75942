"""The platform over HTTP against real gunicorn processes with two workers."""

import concurrent.futures
import signal
import time
from collections import Counter

import pytest
import requests

from tests.e2e.sse_client import SseStream
from tests.support.databases import REDIS_URL
from tests.support.server import insert_log

RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
# Counters live in the database's storage by default, in Redis when configured.
COUNTER_STORAGES = ["database"] + (["redis"] if REDIS_URL else [])


def fresh_get(url, **kwargs):
    """A request on a new connection, so gunicorn may hand it to either worker."""
    with requests.Session() as session:
        return session.get(url, timeout=10, **kwargs)


def assert_envelope(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


# ---- authentication and authorisation --------------------------------------


def test_health_and_docs_need_no_token(server):
    assert fresh_get(f"{server.url}/api/v1/status/health").json() == {"healthy": True}
    spec = fresh_get(f"{server.url}/api/v1/openapi.json").json()
    assert "/api/v1/status" in spec["paths"]
    assert fresh_get(f"{server.url}/api/v1/docs").status_code == 200


def test_missing_malformed_unknown_tokens_are_401(server):
    url = f"{server.url}/api/v1/status"
    good = server.token("read")
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "},
                    {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Bearer {forged}"},
                    {"Authorization": f"Bearer lgt_0000000000000000_{'A' * 43}"}):
        assert_envelope(fresh_get(url, headers=headers), 401, "unauthorized")


def test_scopes(server):
    status, config = f"{server.url}/api/v1/status", f"{server.url}/api/v1/config"
    patch = {"json": {"agent.max_turns": 60}, "timeout": 10}
    assert fresh_get(status, headers=server.headers("read")).status_code == 200
    assert fresh_get(status, headers=server.headers("write")).status_code == 200
    assert fresh_get(status, headers=server.headers("admin")).status_code == 200
    error = assert_envelope(requests.patch(config, headers=server.headers("read"), **patch), 403, "forbidden")
    assert error["details"] == {"required_scope": "admin"}
    assert_envelope(requests.patch(config, headers=server.headers("write"), **patch), 403, "forbidden")
    assert requests.patch(config, headers=server.headers("admin"), **patch).status_code == 200


def test_cli_tokens_expire_and_revoke(server):
    created = server.flask("auth", "token", "--name", "ci", "--scope", "read", "--expires", "1s")
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("lgt_")
    headers = {"Authorization": f"Bearer {token}"}
    time.sleep(1.1)
    assert_envelope(fresh_get(f"{server.url}/api/v1/status", headers=headers), 401, "unauthorized")

    token = server.flask("auth", "token", "--name", "ops", "--scope", "read").stdout.strip().splitlines()[-1]
    token_id = token.split("_")[1]
    headers = {"Authorization": f"Bearer {token}"}
    assert fresh_get(f"{server.url}/api/v1/status", headers=headers).status_code == 200
    listing = server.flask("auth", "list").stdout
    assert token_id in listing and token.split("_")[2] not in listing
    server.flask("auth", "revoke", token_id)
    for _ in range(4):  # both workers refuse it at once
        assert_envelope(fresh_get(f"{server.url}/api/v1/status", headers=headers), 401, "unauthorized")
    assert "revoked" in server.flask("auth", "list").stdout
    assert server.flask("auth", "revoke", "nope", check=False).returncode != 0


# ---- errors -------------------------------------------------------------------


def test_error_envelopes(server):
    headers = server.headers("admin")
    assert_envelope(fresh_get(f"{server.url}/api/v1/nowhere", headers=headers), 404, "not_found")
    assert_envelope(fresh_get(f"{server.url}/elsewhere"), 404, "not_found")
    error = assert_envelope(requests.delete(f"{server.url}/api/v1/status", headers=headers), 405,
                            "method_not_allowed")
    assert "GET" in error["details"]["allowed"]
    config = f"{server.url}/api/v1/config"
    assert_envelope(requests.patch(config, data="{nope", headers={**headers, "Content-Type": "application/json"}),
                    400, "bad_request")
    assert_envelope(requests.patch(config, data="a=b", headers={**headers, "Content-Type": "text/plain"}),
                    400, "bad_request")
    error = assert_envelope(requests.patch(config, json={"agent.max_turns": "many", "x.y": 1}, headers=headers),
                            400, "bad_request")
    assert set(error["details"]) == {"agent.max_turns", "x.y"}
    error = assert_envelope(fresh_get(f"{server.url}/api/v1/logs", params={"limit": 5000}, headers=headers),
                            400, "bad_request")
    assert "limit" in error["details"]
    big = "x" * (2 * 1024 * 1024)
    assert_envelope(requests.patch(config, data=big, headers={**headers, "Content-Type": "application/json"}),
                    413, "payload_too_large")


# ---- rate limits --------------------------------------------------------------


@pytest.mark.parametrize("storage", COUNTER_STORAGES)
def test_rate_limit_is_exact_across_workers(server_factory, storage):
    config = {"rate_limits": {"default": "12/10s"}}
    if storage == "redis":
        config["redis"] = {"url": REDIS_URL}
    server = server_factory(config)
    headers = server.headers("read")
    url = f"{server.url}/api/v1/status"
    # Start early in a window so the burst falls in one window.
    time.sleep(10 - time.time() % 10 + 0.05)
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda _: fresh_get(url, headers=headers), range(36)))
    by_window = Counter()
    for response in responses:
        assert all(name in response.headers for name in RATE_HEADERS)
        if response.status_code == 200:
            by_window[response.headers["X-RateLimit-Reset"]] += 1
        else:
            error = assert_envelope(response, 429, "rate_limited")
            assert int(response.headers["Retry-After"]) >= 1
            assert error["details"]["limit"] == 12
    assert len(by_window) == 1, by_window
    assert list(by_window.values()) == [12]
    # Tokens have their own budgets; anonymous clients are counted by address.
    assert fresh_get(url, headers=server.headers("admin")).status_code == 200


def test_rate_limit_headers_on_every_response(server):
    headers = server.headers("read")
    responses = [
        fresh_get(f"{server.url}/api/v1/status", headers=headers),
        fresh_get(f"{server.url}/api/v1/status"),
        fresh_get(f"{server.url}/api/v1/nowhere", headers=headers),
        requests.post(f"{server.url}/api/v1/status", headers=headers),
        fresh_get(f"{server.url}/api/v1/status/health"),
    ]
    now = time.time()
    for response in responses:
        assert int(response.headers["X-RateLimit-Limit"]) > 0
        assert int(response.headers["X-RateLimit-Remaining"]) >= 0
        assert now - 5 < int(response.headers["X-RateLimit-Reset"]) < now + 5
    assert responses[0].headers["X-RateLimit-Limit"] == "30"


def test_sessions_and_config_write_groups(server_factory):
    server = server_factory({"rate_limits": {"config_write": "2/10s"}})
    headers = server.headers("admin")
    time.sleep(10 - time.time() % 10 + 0.05)
    codes = [requests.patch(f"{server.url}/api/v1/config", json={"memory.top_k": 3}, headers=headers).status_code
             for _ in range(4)]
    assert codes == [200, 200, 429, 429]
    assert fresh_get(f"{server.url}/api/v1/config", headers=headers).status_code == 200


# ---- status and config --------------------------------------------------------


def test_status_fields(server, backend):
    body = fresh_get(f"{server.url}/api/v1/status", headers=server.headers("read")).json()
    assert body["status"] == "healthy"
    assert body["version"] == "0.1.0"
    assert isinstance(body["uptime_secs"], int) and body["uptime_secs"] >= 0
    assert isinstance(body["active_sessions"], int)
    assert set(body["channels"]) == {"connected", "total"}
    assert set(body["plugins"]) == {"loaded", "total"}
    assert body["memory"]["backend"] == backend and isinstance(body["memory"]["entries"], int)
    assert body["provider"] == {"name": "echo", "model": "echo-1"}


def test_config_redaction_and_hot_reload_in_every_worker(server_factory):
    server = server_factory({
        "provider": {"api_key": "sk-very-secret"},
        "channels_config": {"telegram": {"bot_token": "123:abc", "allowed_users": ["42"]}},
    })
    headers = server.headers("admin")
    config = fresh_get(f"{server.url}/api/v1/config", headers=headers).json()
    assert config["provider"]["api_key"] == "***REDACTED***"
    assert config["channels_config"]["telegram"] == {"bot_token": "***REDACTED***", "allowed_users": ["42"]}
    assert "sk-very-secret" not in str(config) and "123:abc" not in str(config)

    result = requests.patch(f"{server.url}/api/v1/config", headers=headers, json={
        "agent.max_turns": 77, "memory.top_k": 15, "provider.api_key": "***REDACTED***"})
    assert result.json() == {"updated": ["agent.max_turns", "memory.top_k"], "reload_required": False}
    seen = {fresh_get(f"{server.url}/api/v1/config", headers=headers).json()["agent"]["max_turns"]
            for _ in range(12)}
    assert seen == {77}
    text = server.config_path.read_text()
    assert "sk-very-secret" in text and "written by the test suite" in text

    result = requests.patch(f"{server.url}/api/v1/config", headers=headers, json={"gateway.port": 1})
    assert result.json() == {"updated": ["gateway.port"], "reload_required": True}


def test_config_show_cli_redacts(server_factory):
    server = server_factory({"provider": {"api_key": "sk-cli-secret"}, "auth": {"default_token_expiry_days": 2}})
    server.flask("auth", "token", "--name", "short-lived", "--scope", "read")
    listing = next(line for line in server.flask("auth", "list").stdout.splitlines() if "short-lived" in line)
    assert "never" not in listing and "active" in listing
    out = server.flask("config", "show").stdout
    assert "***REDACTED***" in out and "sk-cli-secret" not in out
    assert "m0001_platform" in server.flask("db", "status").stdout


# ---- logs ---------------------------------------------------------------------


def test_logs_query_filters(server):
    headers = server.headers("read")
    marker = f"marker-{time.time()}"
    insert_log(server.database_url, f"{marker} info", module="agent::loop", level=20)
    insert_log(server.database_url, f"{marker} debug", module="agent::loop", level=10)
    insert_log(server.database_url, f"{marker} error", module="channel::telegram", level=40)
    insert_log(server.database_url, f"{marker} other", module="agents", level=40)

    def messages(**params):
        body = fresh_get(f"{server.url}/api/v1/logs", headers=headers, params=params).json()
        return [e["message"] for e in body["entries"] if e["message"].startswith(marker)], body

    found, body = messages()
    assert found == [f"{marker} info", f"{marker} error", f"{marker} other"]
    entry = next(e for e in body["entries"] if e["message"] == f"{marker} info")
    assert set(entry) >= {"timestamp", "level", "module", "message", "session_id"}
    assert entry["level"] == "info" and entry["timestamp"].endswith("Z")
    assert messages(level="debug")[0][0] == f"{marker} info" and len(messages(level="debug")[0]) == 4
    assert messages(level="error")[0] == [f"{marker} error", f"{marker} other"]
    assert messages(module="agent", level="trace")[0] == [f"{marker} info", f"{marker} debug"]
    assert messages(module="channel::telegram")[0] == [f"{marker} error"]
    assert messages(since="2099-01-01T00:00:00Z")[0] == []
    limited = fresh_get(f"{server.url}/api/v1/logs", headers=headers, params={"limit": 1, "level": "trace"}).json()
    assert len(limited["entries"]) == 1 and limited["total"] >= 4
    assert_envelope(fresh_get(f"{server.url}/api/v1/logs", headers=headers, params={"since": "soon"}),
                    400, "bad_request")


def test_service_records_reach_the_logs(server):
    headers = server.headers("admin")
    requests.patch(f"{server.url}/api/v1/config", headers=headers, json={"memory.top_k": 4})
    fresh_get(f"{server.url}/api/v1/missing-page", headers=headers)

    def logged(module, level, text):
        body = fresh_get(f"{server.url}/api/v1/logs", headers=headers,
                         params={"module": module, "level": level}).json()
        return any(text in e["message"] for e in body["entries"])

    deadline = time.time() + 5
    while time.time() < deadline:
        if (logged("config", "info", "memory.top_k")
                and logged("http", "debug", "PATCH /api/v1/config 200")
                and logged("http", "info", "GET /api/v1/missing-page 404")):
            return
        time.sleep(0.1)
    raise AssertionError("the config change or the requests were not logged")


def test_sse_stream_receives_records_from_other_processes(server):
    stream = SseStream(server.url, "/api/v1/logs/stream", server.headers("read"), {"module": "test"})
    try:
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        assert stream.headers["x-accel-buffering"] == "no"
        time.sleep(0.3)
        ids = [insert_log(server.database_url, f"live {i}", module="test::sse") for i in range(3)]
        events = stream.events_until(lambda e: e.json()["message"] == "live 2")
        assert [e.event for e in events] == ["log"] * 3
        assert [int(e.id) for e in events] == ids
        assert [e.json()["message"] for e in events] == ["live 0", "live 1", "live 2"]
        assert events[0].json()["module"] == "test::sse"
    finally:
        stream.close()


def test_sse_stream_sees_records_logged_by_either_worker(server):
    """Config changes are logged by whichever worker takes them; one stream sees them all."""
    headers = server.headers("admin")
    stream = SseStream(server.url, "/api/v1/logs/stream", headers, {"module": "config"})
    try:
        time.sleep(0.3)
        for value in range(1, 9):
            with requests.Session() as session:  # a new connection: either worker may take it
                response = session.patch(f"{server.url}/api/v1/config", headers=headers,
                                         json={"memory.top_k": value})
            assert response.status_code == 200
            time.sleep(0.25)  # stay under the config write limit of 5/s
        seen = []
        while len(seen) < 8:
            event = stream.next_event()
            assert event is not None
            if "memory.top_k" in event.json()["message"]:
                seen.append(int(event.id))
        assert seen == sorted(seen)
    finally:
        stream.close()


def test_last_event_id_resumes_without_gaps(server):
    headers = server.headers("read")
    first = [insert_log(server.database_url, f"resume {i}", module="test::resume") for i in range(3)]
    stream = SseStream(server.url, "/api/v1/logs/stream", {**headers, "Last-Event-ID": str(first[0] - 1)},
                       {"module": "test::resume"})
    try:
        events = stream.events_until(lambda e: e.json()["message"] == "resume 2")
        assert [int(e.id) for e in events] == first
    finally:
        stream.close()
    missed = [insert_log(server.database_url, f"resume {i}", module="test::resume") for i in range(3, 6)]
    stream = SseStream(server.url, "/api/v1/logs/stream", {**headers, "Last-Event-ID": str(first[-1])},
                       {"module": "test::resume"})
    try:
        events = stream.events_until(lambda e: e.json()["message"] == "resume 5")
        assert [int(e.id) for e in events] == missed
        later = insert_log(server.database_url, "resume 6", module="test::resume")
        assert int(stream.next_event().id) == later
    finally:
        stream.close()


def test_stream_query_parameter_and_heartbeat(server_factory):
    server = server_factory({"logs": {"heartbeat_secs": 0.3}})
    stream = SseStream(server.url, "/api/v1/logs", server.headers("read"), {"stream": "true", "module": "test"})
    try:
        assert stream.status == 200
        time.sleep(0.8)
        entry_id = insert_log(server.database_url, "via stream=true", module="test::q")
        event = stream.next_event()
        assert int(event.id) == entry_id
        assert "heartbeat" in stream.comments
    finally:
        stream.close()


def test_streams_end_cleanly_on_graceful_shutdown(server_factory):
    server = server_factory()
    streams = [SseStream(server.url, "/api/v1/logs/stream", server.headers("read")) for _ in range(3)]
    time.sleep(0.3)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    for stream in streams:
        assert stream.next_event() is None
        assert stream.ended  # the chunked body was terminated, not cut
        stream.close()
    assert server.process.wait(15) == 0
    assert time.monotonic() - started < 8
    assert "Traceback" not in server.log()


def test_bad_config_stops_startup_with_a_message(tmp_path):
    import subprocess
    import sys

    from tests.support.server import ROOT

    path = tmp_path / "lockgate.toml"
    path.write_text("[gateway]\nport = 3999\n[agent]\nmax_turns = -5\n")
    env = {"LOCKGATE_CONFIG": str(path), "LOCKGATE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for command in (["-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                    ["-m", "flask", "--app", "wsgi", "db", "status"]):
        result = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode != 0
        assert "agent.max_turns" in result.stderr and "line 4" in result.stderr
        assert "Traceback" not in result.stderr


def test_logs_tail_cli_follows_the_stream(server):
    import subprocess
    import sys

    from tests.support.server import ROOT

    env = {**server.env, "LOCKGATE_TOKEN": server.token("read"), "PYTHONUNBUFFERED": "1"}
    tail = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "logs", "tail", "--module", "test"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        line = ""
        while time.time() < deadline and "tailed line" not in line:
            insert_log(server.database_url, "tailed line", module="test::cli", level=30)
            line = _readline_with_timeout(tail.stdout, 1.0)
        assert "tailed line" in line
        assert "WARN" in line and "test::cli" in line
    finally:
        tail.kill()
        tail.wait(5)


def _readline_with_timeout(stream, timeout):
    import select

    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""
