import json
import re
from datetime import datetime

import pytest

from app.core.db import connection
from app.sessions import service
from tests.agent.providers.fake_llm import FakeLLMServer
from tests.sessions.helpers import published
from tests.support.sse import parse_sse

MESSAGE_ID = re.compile(r"^msg_[0-9a-f]{24}$")


def transcript(client, auth, session_id, **query):
    response = client.get(f"/api/v1/sessions/{session_id}/messages", query_string=query, headers=auth("read"))
    assert response.status_code == 200, response.json
    return response.json


def session_of(client, auth, session_id):
    return client.get(f"/api/v1/sessions/{session_id}", headers=auth("read")).json


def test_a_turn_returns_the_reply_and_is_recorded(create, send, client, auth):
    session = create(user_id="u1")
    response = send(session["id"], "hello there")
    assert response.status_code == 200
    reply = response.json
    assert MESSAGE_ID.match(reply["id"])
    assert reply == {
        "id": reply["id"], "session_id": session["id"], "seq": 2, "role": "assistant",
        "content": "echo: hello there", "tool_calls": [], "usage": reply["usage"],
        "created_at": reply["created_at"],
    }
    assert reply["usage"]["output"] == 3 and reply["usage"]["input"] > 0
    listed = transcript(client, auth, session["id"])
    assert listed["total"] == 2
    user, assistant = listed["messages"]
    assert (user["role"], user["content"], user["seq"], user["usage"]) == ("user", "hello there", 1, None)
    assert assistant == reply
    after = session_of(client, auth, session["id"])
    assert after["turn_count"] == 1
    assert after["token_usage"] == reply["usage"]
    assert after["last_activity"] == reply["created_at"]
    assert published("message.received", "message.sent") == [
        ("message.received", {"session_id": session["id"], "message": user}),
        ("message.sent", {"session_id": session["id"], "message": reply}),
    ]


def test_usage_adds_up_over_turns(create, send, client, auth):
    session = create()
    replies = [send(session["id"], text).json for text in ("one", "two words", "three more words")]
    after = session_of(client, auth, session["id"])
    assert after["turn_count"] == 3
    assert after["token_usage"] == {"input": sum(r["usage"]["input"] for r in replies),
                                    "output": sum(r["usage"]["output"] for r in replies)}
    # The echo provider counts words of the whole conversation: later turns carry the history.
    assert replies[2]["usage"]["input"] > replies[0]["usage"]["input"]


def test_a_turn_that_calls_a_tool(create, send):
    session = create()
    reply = send(session["id"], '/tool current_time {"timezone": "Asia/Tokyo"}').json
    (call,) = reply["tool_calls"]
    assert (call["name"], call["arguments"], call["is_error"]) == ("current_time", {"timezone": "Asia/Tokyo"}, False)
    assert json.loads(call["result"])["local"].endswith("+09:00")
    assert reply["content"] == f"Tool current_time returned: {call['result']}"


def test_a_failing_tool_is_reported_and_the_turn_completes(create, send, client, auth):
    session = create()
    response = send(session["id"], '/tool current_time {"timezone": "Nowhere/Land"}')
    assert response.status_code == 200
    (call,) = response.json["tool_calls"]
    assert call["is_error"] and "unknown time zone" in call["result"]
    assert session_of(client, auth, session["id"])["turn_count"] == 1


def test_provider_failure_is_a_502_and_leaves_no_half_turn(create, send, client, auth):
    session = create()
    send(session["id"], "first")
    before = session_of(client, auth, session["id"])
    response = send(session["id"], "/fail")
    assert response.status_code == 502
    assert response.json["error"]["code"] == "provider_error"
    assert response.json["error"]["message"] == "echo provider asked to fail"
    after = session_of(client, auth, session["id"])
    assert (after["turn_count"], after["token_usage"]) == (before["turn_count"], before["token_usage"])
    # The user's message is kept, with no reply after it.
    messages = transcript(client, auth, session["id"])["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "first"), ("assistant", "echo: first"), ("user", "/fail")]
    assert len(published("message.sent")) == 1
    # The session goes on normally.
    assert send(session["id"], "again").json["content"] == "echo: again"
    assert transcript(client, auth, session["id"])["total"] == 5


def test_max_turns_is_a_409(app_factory):
    app = app_factory({"agent": {"max_turns": 2}})
    client = app.test_client()
    from app.core.auth import create_token

    with connection():
        headers = {"Authorization": f"Bearer {create_token('t', ['write'])[1]}"}
    session_id = client.post("/api/v1/sessions", json={}, headers=headers).json["id"]
    for text in ("one", "two"):
        assert client.post(f"/api/v1/sessions/{session_id}/messages", json={"content": text},
                           headers=headers).status_code == 200
    refused = client.post(f"/api/v1/sessions/{session_id}/messages", json={"content": "three"}, headers=headers)
    assert refused.status_code == 409
    assert refused.json["error"]["details"] == {"turn_count": 2, "max_turns": 2}
    listed = client.get(f"/api/v1/sessions/{session_id}/messages", headers=headers).json
    assert listed["total"] == 4


def test_a_terminated_session_takes_no_messages(create, send, client, auth):
    session = create()
    client.delete(f"/api/v1/sessions/{session['id']}", headers=auth("write"))
    response = send(session["id"], "anyone?")
    assert response.status_code == 409
    assert response.json["error"]["message"] == f"Session {session['id']} is terminated"
    assert transcript(client, auth, session["id"])["total"] == 0


def test_a_message_wakes_an_idle_session(create, send, client, auth, assert_tallies_match):
    session = create()
    with connection():
        assert service.idle_inactive(cutoff=datetime(2999, 1, 1)) == 1
    assert session_of(client, auth, session["id"])["status"] == "idle"
    assert send(session["id"], "wake up").status_code == 200
    assert session_of(client, auth, session["id"])["status"] == "active"
    assert_tallies_match()


@pytest.mark.parametrize("body", [{}, {"content": ""}, {"content": 5}, {"content": "x" * 100_001},
                                  {"content": "hi", "stream": "maybe"}, {"content": "hi", "extra": 1}])
def test_bad_message_bodies_are_400(create, client, auth, body):
    session = create()
    response = client.post(f"/api/v1/sessions/{session['id']}/messages", json=body, headers=auth("write"))
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_request"


@pytest.mark.parametrize("query", [{"limit": 0}, {"limit": 500}, {"offset": -5}])
def test_bad_transcript_queries_are_400(create, client, auth, query):
    session = create()
    response = client.get(f"/api/v1/sessions/{session['id']}/messages", query_string=query, headers=auth("read"))
    assert response.status_code == 400


def test_transcript_pages(create, send, client, auth):
    session = create()
    for n in range(3):
        send(session["id"], f"message {n}")
    page = transcript(client, auth, session["id"], limit=2, offset=3)
    assert page["total"] == 6
    assert [(m["seq"], m["role"]) for m in page["messages"]] == [(4, "assistant"), (5, "user")]


@pytest.mark.parametrize("how", ["body", "accept"])
def test_a_streamed_turn(create, client, auth, how):
    session = create()
    body = {"content": '/tool current_time {}'}
    headers = auth("write")
    if how == "body":
        body["stream"] = True
    else:
        headers = {**headers, "Accept": "text/event-stream"}
    response = client.post(f"/api/v1/sessions/{session['id']}/messages", json=body, headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    events = parse_sse(response.get_data(as_text=True))
    names = [name for name, _ in events]
    assert names[:3] == ["received", "tool_call", "tool_result"]
    assert names[-1] == "done" and set(names[3:-1]) == {"delta"}
    received, done = events[0][1], events[-1][1]
    assert received["message"]["content"] == '/tool current_time {}' and received["message"]["role"] == "user"
    assert events[1][1] == {"id": "call_1", "name": "current_time", "arguments": {}}
    assert events[2][1]["is_error"] is False
    text = "".join(data["text"] for name, data in events if name == "delta")
    assert text == done["message"]["content"]
    assert done["usage"] == done["message"]["usage"] and done["usage"]["output"] > 0
    assert transcript(client, auth, session["id"])["messages"][-1] == done["message"]


def test_a_provider_failure_while_streaming_is_an_error_event(create, send, client, auth):
    session = create()
    response = send(session["id"], "/fail", stream=True)
    assert response.status_code == 200
    events = parse_sse(response.get_data(as_text=True))
    assert [name for name, _ in events] == ["received", "error"]
    assert events[1][1]["error"]["code"] == "provider_error"
    assert session_of(client, auth, session["id"])["turn_count"] == 0
    # The lock was released: the session answers the next message.
    assert send(session["id"], "still there?").status_code == 200


@pytest.fixture
def fake_llm():
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def openai_app(app_factory, fake_llm):
    return app_factory({"provider": {"name": "openai", "model": "gpt-test", "base_url": fake_llm.url + "/v1",
                                     "api_key": "sk-test", "max_retries": 0},
                        "memory": {"top_k": 3}})


def test_memories_are_recalled_into_the_prompt_and_top_k_applies_at_once(openai_app, fake_llm):
    client = openai_app.test_client()
    from app.core.auth import create_token

    with connection():
        headers = {"Authorization": f"Bearer {create_token('t', ['admin'])[1]}"}
    first = client.post("/api/v1/sessions", json={"user_id": "ada"}, headers=headers).json["id"]
    for n in range(4):
        fake_llm.queue_reply(text=f"noted harbour fact {n}")
        client.post(f"/api/v1/sessions/{first}/messages", json={"content": f"the harbour has {n} ships"},
                    headers=headers)
    second = client.post("/api/v1/sessions", json={"user_id": "ada"}, headers=headers).json["id"]

    def system_prompt_after(content):
        client.post(f"/api/v1/sessions/{second}/messages", json={"content": content}, headers=headers)
        messages = fake_llm.requests[-1].json["messages"]
        assert messages[0]["role"] == "system"
        return messages[0]["content"]

    prompt = system_prompt_after("how many ships are in the harbour?")
    assert prompt.startswith("You are a helpful assistant.")
    assert prompt.count("- User: the harbour has") == 3
    patched = client.patch("/api/v1/config", json={"memory.top_k": 1}, headers=headers)
    assert patched.status_code == 200
    assert system_prompt_after("ships in the harbour again").count("- User: the harbour has") == 1
    # Both built-in tools were offered to the model.
    names = [tool["function"]["name"] for tool in fake_llm.requests[-1].json["tools"]]
    assert names == ["current_time", "memory_search"]


def test_history_is_replayed_with_its_tool_rounds(openai_app, fake_llm):
    client = openai_app.test_client()
    from app.core.auth import create_token

    with connection():
        headers = {"Authorization": f"Bearer {create_token('t', ['write'])[1]}"}
    session_id = client.post("/api/v1/sessions", json={}, headers=headers).json["id"]
    fake_llm.queue_reply(text="Checking.", tool_calls=[{"id": "call_t1", "name": "current_time", "arguments": {}}],
                         input_tokens=11, output_tokens=4)
    fake_llm.queue_reply(text="It is late.", input_tokens=30, output_tokens=6)
    reply = client.post(f"/api/v1/sessions/{session_id}/messages", json={"content": "what time is it?"},
                        headers=headers).json
    assert reply["content"] == "It is late." and reply["usage"] == {"input": 41, "output": 10}
    assert [call["id"] for call in reply["tool_calls"]] == ["call_t1"]
    fake_llm.queue_reply(text="You asked for the time.")
    client.post(f"/api/v1/sessions/{session_id}/messages", json={"content": "what did I ask?"}, headers=headers)
    roles = [(m["role"], m.get("content")) for m in fake_llm.requests[-1].json["messages"]]
    tool_result = reply["tool_calls"][0]["result"]
    assert roles[1:] == [("user", "what time is it?"), ("assistant", "Checking."), ("tool", tool_result),
                         ("assistant", "It is late."), ("user", "what did I ask?")]


def test_memory_off_recalls_nothing_and_offers_no_memory_tool(app_factory, fake_llm):
    app = app_factory({"provider": {"name": "openai", "base_url": fake_llm.url + "/v1"},
                       "memory": {"backend": "none"}})
    client = app.test_client()
    from app.core.auth import create_token

    with connection():
        headers = {"Authorization": f"Bearer {create_token('t', ['read', 'write'])[1]}"}
    session_id = client.post("/api/v1/sessions", json={}, headers=headers).json["id"]
    for content in ("remember the lighthouse", "the lighthouse?"):
        client.post(f"/api/v1/sessions/{session_id}/messages", json={"content": content}, headers=headers)
    request = fake_llm.requests[-1].json
    assert "Notes from earlier" not in request["messages"][0]["content"]
    assert [tool["function"]["name"] for tool in request["tools"]] == ["current_time"]
    status = client.get("/api/v1/status", headers=headers).json
    assert status["memory"] == {"backend": "none", "entries": 0}


def test_a_client_leaving_mid_stream_does_not_cut_the_turn_short(create, client, auth, send):
    session = create()
    response = client.post(f"/api/v1/sessions/{session['id']}/messages",
                           json={"content": "/tool current_time {}", "stream": True},
                           headers=auth("write"), buffered=False)
    first = next(iter(response.response))
    assert b"event: received" in first
    response.close()
    messages = transcript(client, auth, session["id"])["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["tool_calls"][0]["name"] == "current_time"
    assert send(session["id"], "next").status_code == 200

