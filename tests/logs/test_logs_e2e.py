"""Logs over HTTP against real gunicorn processes with two workers: queries, live streams fed by
every process, resumption without gaps, clean ends at shutdown, and ``flask logs tail``."""

import signal
import time

import pytest
import requests

from tests.support.http import assert_envelope, fresh_get
from tests.support.server import insert_log, insert_logs
from tests.support.sse import SseStream
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e


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

    wait_until(lambda: (logged("config", "info", "memory.top_k")
                        and logged("http", "debug", "PATCH /api/v1/config 200")
                        and logged("http", "info", "GET /api/v1/missing-page 404")),
               timeout=5, interval=0.1, message="the config change and both requests in the logs")


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


# ---- live records written straight to the socket ------------------------------------


def test_live_records_go_straight_to_the_socket_framed_as_gunicorn_frames_them(server_factory):
    """HTTP/1.1 gets chunks, HTTP/1.0 a plain body to the close: gunicorn's choice, kept by the writes
    the tailer makes itself, and the closing chunk still comes from gunicorn at shutdown."""
    server = server_factory({"logs": {"level": "debug", "heartbeat_secs": 0.5}})
    headers = server.headers("read")
    streams = {version: SseStream(server.url, "/api/v1/logs/stream", headers, {"module": "test::wire"},
                                  http_version=version) for version in ("1.1", "1.0")}
    try:
        def modes():
            entries = fresh_get(f"{server.url}/api/v1/logs", headers=headers,
                                params={"module": "http::sse", "level": "debug"}).json()["entries"]
            return sorted(e["message"] for e in entries if e["message"].startswith("stream live"))

        assert wait_until(lambda: len(found := modes()) == 2 and found, timeout=10, interval=0.1) == [
            "stream live: written straight to its socket (chunked)",
            "stream live: written straight to its socket (not chunked)"]
        ids = [insert_log(server.database_url, f"wire {n}", module="test::wire") for n in range(3)]
        time.sleep(1.2)  # quiet: heartbeats from the worker's heartbeat loop, between the tailer's writes
        ids += [insert_log(server.database_url, f"wire {n}", module="test::wire") for n in range(3, 5)]
        for stream in streams.values():
            events = stream.events_until(lambda e: e.json()["message"] == "wire 4")
            assert [int(e.id) for e in events] == ids
            assert "heartbeat" in stream.comments
        assert streams["1.1"].headers["transfer-encoding"] == "chunked"
        assert "transfer-encoding" not in streams["1.0"].headers
        server.process.send_signal(signal.SIGTERM)
        for stream in streams.values():
            while stream.next_event() is not None:
                pass
            assert stream.parser.unknown == []  # no chunk size line where none belongs, nothing cut
        assert streams["1.1"].ended and streams["1.0"].closed
        assert server.process.wait(15) == 0
    finally:
        for stream in streams.values():
            stream.close()


def test_a_client_that_reads_slowly_gets_every_record_intact_and_in_order(server):
    """Records the socket cannot take at once wait their turn, and what follows queues behind them,
    while the client reads a little at a time and new records keep coming."""
    import threading

    stream = SseStream(server.url, "/api/v1/logs/stream", server.headers("read"), {"module": "test::slow"},
                       timeout=30, receive_buffer=4096)
    # 8 MB: more than the kernel buffers of both ends hold (4 MB at most for the sender's).
    messages = [f"slow {n} {'y' * (n % 4000)}" for n in range(4000)]

    def produce():
        for start in range(0, len(messages), 250):  # many polls' worth, each more than the socket takes
            insert_logs(server.database_url, messages[start:start + 250], module="test::slow")
            time.sleep(0.1)

    producer = threading.Thread(target=produce)
    try:
        time.sleep(0.5)  # live before the records come
        producer.start()
        time.sleep(1.0)  # not reading: the socket fills, the rest queues
        received = []
        while len(received) < len(messages):
            event = stream.next_event()
            assert event is not None, f"the stream ended after {len(received)} records"
            received.append(event)
            if len(received) % 50 == 0:
                time.sleep(0.02)  # reading slowly: the socket takes a little at a time
        assert [e.json()["message"] for e in received] == messages
        ids = [int(e.id) for e in received]
        assert ids == sorted(set(ids))
        assert stream.parser.unknown == []
        insert_log(server.database_url, "after the slow read", module="test::slow")
        assert stream.next_event().json()["message"] == "after the slow read"
    finally:
        producer.join(60)
        stream.close()


def test_a_stream_stopped_while_its_client_lags_ends_after_whole_chunks(server_factory):
    """At shutdown what waits for a lagging client is sent before gunicorn's closing chunk."""
    server = server_factory()
    stream = SseStream(server.url, "/api/v1/logs/stream", server.headers("read"), {"module": "test::lag"},
                       timeout=30, receive_buffer=4096)
    try:
        time.sleep(0.5)
        messages = [f"lag {n} {'z' * (n % 4000)}" for n in range(4000)]  # 8 MB, as above
        insert_logs(server.database_url, messages, module="test::lag")
        time.sleep(1.0)  # handed over: what the socket did not take waits in the queue
        server.process.send_signal(signal.SIGTERM)
        received = []
        while (event := stream.next_event()) is not None:
            received.append(event.json()["message"])
        assert received == messages
        assert stream.ended and stream.parser.unknown == []
        assert server.process.wait(15) == 0
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
        # Records the server logged meanwhile may still arrive; then the body ends.
        while stream.next_event() is not None:
            assert time.monotonic() - started < 8
        assert stream.ended  # the chunked body was terminated, not cut
        stream.close()
    assert server.process.wait(15) == 0
    assert time.monotonic() - started < 8
    assert "Traceback" not in server.log()


def test_logs_tail_cli_follows_the_stream(server):
    import subprocess
    import sys

    from tests.support.server import ROOT

    env = {**server.env, "LOCKGATE_TOKEN": server.token("read"), "PYTHONUNBUFFERED": "1"}
    tail = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "logs", "tail", "--module", "test"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:

        def tailed():
            insert_log(server.database_url, "tailed line", module="test::cli", level=30)
            line = _readline_with_timeout(tail.stdout, 1.0)
            return line if "tailed line" in line else ""

        line = wait_until(tailed, timeout=20, interval=0, message="the inserted record printed by `logs tail`")
        assert "tailed line" in line
        assert "WARN" in line and "test::cli" in line
    finally:
        tail.kill()
        tail.wait(5)


def _readline_with_timeout(stream, timeout):
    import select

    ready, _, _ = select.select([stream], [], [], timeout)
    return stream.readline() if ready else ""
