"""The OpenAI and Anthropic providers driven through the session API, against a fake LLM server."""

import os
import signal
import threading

import pytest
import requests

from tests.agent.providers.fake_llm import FakeLLMServer
from tests.support.connections import workers_calling, workers_serving
from tests.support.http import Api
from tests.support.server import RELAXED_LIMITS, serve
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e

API_KEY = "sk-e2e-secret"


@pytest.fixture(scope="module")
def fake_llm():
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory, backend, fake_llm):
    config = {
        "provider": {"name": "openai", "model": "gpt-fake", "base_url": fake_llm.url + "/v1", "api_key": API_KEY,
                     "max_retries": 0},
        # A killed worker's turn blocks its session for at most a second.
        "agent": {"lock_ttl_secs": 1.0},
    }
    with serve(tmp_path_factory.mktemp("sessions"), backend, {**RELAXED_LIMITS, **config}) as instance:
        yield instance


@pytest.fixture
def api(server, fake_llm):
    fake_llm.reset()
    client = Api(server)
    yield client
    client.close()


def non_system(request):
    return [m for m in request.json["messages"] if m["role"] != "system"]


def test_openai_turn_with_a_tool_call(api, fake_llm):
    session = api.new_session(user_id="oa")
    fake_llm.queue_reply(tool_calls=[{"id": "call_a", "name": "current_time", "arguments": {"timezone": "UTC"}}],
                         input_tokens=20, output_tokens=7)
    fake_llm.queue_reply(text="It is noon.", input_tokens=40, output_tokens=4)
    response = api.send(session["id"], "what time is it?")
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["content"] == "It is noon."
    assert reply["usage"] == {"input": 60, "output": 11}
    (call,) = reply["tool_calls"]
    assert (call["id"], call["name"], call["arguments"], call["is_error"]) == (
        "call_a", "current_time", {"timezone": "UTC"}, False)
    assert api.session(session["id"])["token_usage"] == {"input": 60, "output": 11}

    first, second = fake_llm.requests
    assert first.path == "/v1/chat/completions"
    assert first.headers["authorization"] == f"Bearer {API_KEY}"
    assert first.json["model"] == "gpt-fake"
    assert first.json["messages"][0]["role"] == "system"
    assert {tool["function"]["name"] for tool in first.json["tools"]} == {"current_time", "memory_search"}
    tool_message = second.json["messages"][-1]
    assert (tool_message["role"], tool_message["tool_call_id"], tool_message["content"]) == (
        "tool", "call_a", call["result"])


def test_openai_streamed_turn(api, fake_llm):
    session = api.new_session()
    fake_llm.queue_reply(text="Streaming from a fake model", input_tokens=9, output_tokens=5)
    events = api.stream(session["id"], "stream please")
    assert fake_llm.requests[-1].json["stream"] is True
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert len(deltas) == 5
    done = events[-1]
    assert done[0] == "done"
    assert "".join(deltas) == done[1]["message"]["content"] == "Streaming from a fake model"
    assert done[1]["usage"] == {"input": 9, "output": 5}


def test_anthropic_streamed_turn_with_a_tool_call(api, fake_llm):
    switched = api.patch("/config", {"provider.name": "anthropic", "provider.base_url": fake_llm.url,
                                     "provider.model": "claude-fake"})
    assert switched.status_code == 200 and switched.json()["reload_required"] is False
    try:
        session = api.new_session(user_id="an")
        fake_llm.queue_reply(text="Let me look.", tool_calls=[{"id": "toolu_1", "name": "current_time",
                                                               "arguments": {"timezone": "Asia/Tokyo"}}],
                             input_tokens=30, output_tokens=12)
        fake_llm.queue_reply(text="It is evening in Tokyo.", input_tokens=50, output_tokens=6)
        events = api.stream(session["id"], "time in Tokyo?")
        names = [name for name, _ in events]
        assert names == ["received"] + ["delta"] * 3 + ["tool_call", "tool_result"] + ["delta"] * 5 + ["done"]
        assert events[4][1] == {"id": "toolu_1", "name": "current_time", "arguments": {"timezone": "Asia/Tokyo"}}
        assert events[5][1]["result"].count("+09:00") == 1
        message = events[-1][1]["message"]
        assert message["content"] == "It is evening in Tokyo."
        assert message["usage"] == {"input": 80, "output": 18}
        first, second = fake_llm.requests
        assert first.path == "/v1/messages" and first.headers["x-api-key"] == API_KEY
        assert first.json["model"] == "claude-fake" and first.json["system"].startswith("You are a helpful")
        assert second.json["messages"][-1]["content"][0]["type"] == "tool_result"
        assert second.json["messages"][-1]["content"][0]["tool_use_id"] == "toolu_1"
    finally:
        api.patch("/config", {"provider.name": "openai", "provider.base_url": fake_llm.url + "/v1",
                              "provider.model": "gpt-fake"})


def test_provider_failure_is_a_502_and_the_session_stays_consistent(api, fake_llm):
    session = api.new_session()
    fake_llm.queue_reply(text="first answer")
    assert api.send(session["id"], "first").status_code == 200
    before = api.session(session["id"])
    fake_llm.fail_next(500)
    failed = api.send(session["id"], "this one fails")
    assert failed.status_code == 502
    error = failed.json()["error"]
    assert error["code"] == "provider_error"
    assert "upstream returned HTTP 500" in error["message"] and API_KEY not in error["message"]
    after = api.session(session["id"])
    assert (after["turn_count"], after["token_usage"]) == (before["turn_count"], before["token_usage"])
    assert [(m["role"], m["content"]) for m in api.transcript(session["id"])] == [
        ("user", "first"), ("assistant", "first answer"), ("user", "this one fails")]
    fake_llm.queue_reply(text="recovered")
    assert api.send(session["id"], "again").json()["content"] == "recovered"
    assert api.session(session["id"])["turn_count"] == before["turn_count"] + 1


def _concurrent_batch(api, server, fake_llm, size):
    """Send ``size`` messages to a new session at once; slow replies make the turns overlap if they can."""
    fake_llm.reset()
    for k in range(size):
        fake_llm.queue_reply(text=f"answer {k}", delay=0.25)
    session = api.new_session()
    replies, workers = {}, set()

    def sender(n):
        replies[n] = api.send(session["id"], f"question {n}")

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(size)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        workers.update(workers_serving(server))
    return session, replies, workers


def test_concurrent_messages_never_interleave_across_workers(api, server, fake_llm):
    size, seen = 5, set()
    for _attempt in range(3):  # the kernel picks the worker for each connection
        session, replies, workers = _concurrent_batch(api, server, fake_llm, size)
        seen |= workers
        assert sorted(r.status_code for r in replies.values()) == [200] * size
        messages = api.transcript(session["id"])
        assert [m["role"] for m in messages] == ["user", "assistant"] * size
        assert [m["content"] for m in messages[1::2]] == [f"answer {k}" for k in range(size)]
        # Each call to the model saw every earlier turn complete, then its own question.
        for k, request in enumerate(fake_llm.requests):
            conversation = non_system(request)
            assert [m["content"] for m in conversation] == [m["content"] for m in messages[:2 * k + 1]]
        for n, response in replies.items():
            asked = next(i for i, m in enumerate(messages) if m["content"] == f"question {n}")
            assert response.json() == messages[asked + 1]
        if len(seen) == 2:
            break
    assert len(seen) == 2, "both workers should have taken part"


def test_a_worker_killed_mid_turn_leaves_the_session_usable(api, server, fake_llm):
    session = api.new_session()
    fake_llm.queue_reply(text="too late", delay=30)
    outcome = {}

    def stalled_turn():
        try:
            outcome["response"] = api.send(session["id"], "this turn never ends")
        except requests.RequestException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=stalled_turn)
    thread.start()
    wait_until(lambda: fake_llm.requests)
    (worker,) = wait_until(lambda: workers_calling(server, int(fake_llm.url.rsplit(":", 1)[1])))
    os.kill(worker, signal.SIGKILL)
    thread.join(10)
    assert "error" in outcome or outcome["response"].status_code >= 500

    # Readable at once, from the surviving worker (on new connections: kept-alive
    # ones may have been the killed worker's).
    api.close()
    detail = api.session(session["id"])
    assert (detail["status"], detail["turn_count"]) == ("active", 0)
    assert [(m["role"], m["content"]) for m in api.transcript(session["id"])] == [("user", "this turn never ends")]
    # Usable once the dead worker's lock expires (1 s here).
    fake_llm.queue_reply(text="back in business")
    response = api.send(session["id"], "hello again")
    assert response.status_code == 200, response.text
    assert response.json()["content"] == "back in business"
    assert api.session(session["id"])["turn_count"] == 1
    assert len(api.transcript(session["id"])) == 3
    wait_until(lambda: len(server.worker_pids()) == 2 and worker not in server.worker_pids())
