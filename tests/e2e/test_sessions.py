"""Sessions end to end: a real gunicorn with 2 workers, the echo provider."""

import json
import re
import threading

import pytest

from app.core.db import connection, init_database
from app.core.models import LogEntry
from tests.support.http import Api
from tests.support.server import RELAXED_LIMITS, serve
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def server(tmp_path_factory, backend):
    config = {"channels_config": {"telegram": {"bot_token": "123:abc", "api_url": "http://127.0.0.1:9"}}}
    with serve(tmp_path_factory.mktemp("sessions"), backend, {**RELAXED_LIMITS, **config}) as instance:
        yield instance


@pytest.fixture
def api(server):
    client = Api(server)
    yield client
    client.close()


def test_the_reference_session_flow(api):
    created = api.post("/sessions", {"channel": "api", "user_id": "user_123", "metadata": {"source": "web-app"}})
    assert created.status_code == 201
    session = created.json()
    assert re.match(r"^sess_[0-9a-f]{24}$", session["id"])
    assert ISO.match(session["created_at"])
    assert {k: session[k] for k in ("channel", "user_id", "status", "metadata")} == {
        "channel": "api", "user_id": "user_123", "status": "active", "metadata": {"source": "web-app"}}

    reply = api.send(session["id"], "hello gateway").json()
    assert reply["content"] == "echo: hello gateway"

    detail = api.session(session["id"])
    assert set(detail) == {"id", "channel", "user_id", "status", "created_at", "last_activity", "turn_count",
                           "token_usage", "metadata"}
    assert detail["turn_count"] == 1
    assert detail["token_usage"] == reply["usage"] and detail["token_usage"]["output"] == 3
    assert detail["last_activity"] == reply["created_at"] > detail["created_at"]
    assert detail["metadata"] == {"source": "web-app"}

    listed = api.get("/sessions", channel="api").json()
    entry = next(s for s in listed["sessions"] if s["id"] == session["id"])
    assert entry == {k: detail[k] for k in ("id", "channel", "user_id", "status", "created_at", "last_activity")}

    deleted = api.delete(f"/sessions/{session['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert api.session(session["id"])["status"] == "terminated"
    again = api.delete(f"/sessions/{session['id']}")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    refused = api.send(session["id"], "still there?")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "conflict"
    # The transcript of an ended session stays readable.
    assert [m["content"] for m in api.transcript(session["id"])] == ["hello gateway", "echo: hello gateway"]


def test_unknown_sessions_are_404(api):
    for response in (api.get("/sessions/sess_xyz"), api.delete("/sessions/sess_xyz"),
                     api.get("/sessions/sess_xyz/messages"), api.send("sess_xyz", "hi")):
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found", "message": "Session sess_xyz not found",
                                             "details": None}}


def test_bad_requests_are_400(api):
    assert api.post("/sessions", {"channel": "irc"}).status_code == 400
    assert api.post("/sessions", {"user_id": "u" * 500}).status_code == 400
    assert api.get("/sessions", limit=1000).status_code == 400
    assert api.get("/sessions", status="asleep").status_code == 400
    session = api.new_session()
    assert api.post(f"/sessions/{session['id']}/messages", {"content": ""}).status_code == 400


def test_filters_and_totals(api):
    made = {"api": [api.new_session(user_id=f"a{n}")["id"] for n in range(4)],
            "telegram": [api.new_session(channel="telegram", user_id=f"t{n}")["id"] for n in range(3)]}
    api.delete(f"/sessions/{made['telegram'][0]}")

    def page(**query):
        response = api.get("/sessions", **query)
        assert response.status_code == 200
        return response.json()

    telegram = page(channel="telegram")
    assert telegram["total"] == 2
    assert [s["id"] for s in telegram["sessions"]] == made["telegram"][:0:-1]  # newest first
    ended = page(channel="telegram", status="terminated")
    assert ended["total"] == 1 and ended["sessions"][0]["id"] == made["telegram"][0]
    everything = page(limit=200)
    assert everything["total"] == len(everything["sessions"])
    assert set(made["api"]) | set(made["telegram"][1:]) <= {s["id"] for s in everything["sessions"]}
    assert {s["status"] for s in everything["sessions"]} == {"active"}
    first, second = page(limit=3), page(limit=3, offset=3)
    assert first["total"] == second["total"] == everything["total"]
    assert [s["id"] for s in first["sessions"] + second["sessions"]] == [s["id"] for s in everything["sessions"][:6]]
    status = api.get("/status").json()
    assert status["active_sessions"] == everything["total"]


def test_a_streamed_turn(api):
    session = api.new_session()
    events = api.stream(session["id"], "stream these words please")
    names = [name for name, _ in events]
    assert names[0] == "received" and names[-1] == "done"
    assert names[1:-1] == ["delta"] * 5
    text = "".join(data["text"] for name, data in events if name == "delta")
    done = events[-1][1]
    assert text == done["message"]["content"] == "echo: stream these words please"
    assert done["usage"] == done["message"]["usage"]
    assert api.transcript(session["id"])[-1] == done["message"]
    assert api.session(session["id"])["turn_count"] == 1


def test_a_turn_that_calls_tools(api, server):
    session = api.new_session(user_id="toolsmith")
    api.send(session["id"], "the password is swordfish")
    timed = api.send(session["id"], '/tool current_time {"timezone": "Europe/Paris"}').json()
    (call,) = timed["tool_calls"]
    assert call["name"] == "current_time" and not call["is_error"]
    assert json.loads(call["result"])["timezone"] == "Europe/Paris"

    events = api.stream(session["id"], '/tool memory_search {"query": "swordfish"}')
    names = [name for name, _ in events]
    assert names[:3] == ["received", "tool_call", "tool_result"]
    result = json.loads(events[2][1]["result"])
    expected = "User: the password is swordfish\nAssistant: echo: the password is swordfish"
    assert result["results"][0]["content"] == expected
    assert events[-1][1]["message"]["tool_calls"][0]["name"] == "memory_search"

    # The agent loop's log lines carry the session they belong to.
    def logged():
        init_database(server.database_url)
        with connection():
            return list(LogEntry.select().where((LogEntry.module == "agent::loop")
                                                & (LogEntry.session_id == session["id"])))

    entries = wait_until(lambda: len(rows := logged()) >= 5 and rows)  # 3 turns, 2 tool calls
    messages = [entry.message for entry in entries]
    assert any(m.startswith("Tool call completed: current_time (") for m in messages)
    assert any(m.startswith("Tool call completed: memory_search (") for m in messages)
    assert sum(m.startswith("turn ") and "finished" in m for m in messages) == 3


def test_concurrent_messages_to_one_session_stay_ordered(api):
    session = api.new_session()
    count = 8
    replies = {}

    def sender(n):
        replies[n] = api.send(session["id"], f"message number {n}")

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(response.status_code == 200 for response in replies.values())
    messages = api.transcript(session["id"])
    assert [m["seq"] for m in messages] == list(range(1, 2 * count + 1))
    assert [m["role"] for m in messages] == ["user", "assistant"] * count
    for question, answer in zip(messages[::2], messages[1::2], strict=True):
        assert answer["content"] == f"echo: {question['content']}"
    assert {replies[n].json()["id"] for n in range(count)} == {m["id"] for m in messages[1::2]}
    assert api.session(session["id"])["turn_count"] == count
