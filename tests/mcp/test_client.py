"""The MCP client against real servers: the SDK's FastMCP over stdio and Streamable HTTP, and a scripted one."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest

from app.mcp.client import PROTOCOL_VERSION, Disconnected, McpError, Session, TimedOut
from app.mcp.http import HttpTransport
from app.mcp.stdio import StdioTransport
from tests.mcp.conftest import http_config, scripted_config, stdio_config
from tests.support.wait import wait_until


def opened(config, allow_private: bool = True) -> Session:
    transport = HttpTransport(config, allow_private) if config.transport == "http" else StdioTransport(config)
    session = Session(transport, config.name)
    session.open(20)
    return session


@pytest.fixture
def stdio_session():
    session = opened(stdio_config())
    yield session
    session.close()


@pytest.fixture(params=["sse", "json"])
def http_session(request, http_url, http_json_url):
    session = opened(http_config(http_url if request.param == "sse" else http_json_url))
    yield session
    session.close()


@pytest.fixture(params=["stdio", "http"])
def session(request, stdio_session, http_url):
    if request.param == "stdio":
        yield stdio_session
        return
    session = opened(http_config(http_url))
    yield session
    session.close()


def text_of(result: dict) -> str:
    return "".join(item["text"] for item in result["content"] if item["type"] == "text")


def test_initialize_agrees_on_the_version_and_lists_the_tools(session):
    assert session.protocol_version == PROTOCOL_VERSION
    assert session.server_info["name"] == "test-tools"
    tools = {tool["name"]: tool for tool in session.list_tools(10)}
    assert {"add", "echo", "fail", "hang", "crash", "pid", "environment", "learn"} <= set(tools)
    assert tools["add"]["inputSchema"]["properties"]["a"]["type"] == "integer"
    assert tools["echo"]["annotations"]["readOnlyHint"] is True


def test_tools_call_returns_text_structured_content_and_errors(session):
    added = session.call_tool("add", {"a": 2, "b": 40}, 10)
    assert text_of(added) == "42" and added["structuredContent"] == {"result": 42} and not added["isError"]
    failed = session.call_tool("fail", {"reason": "out of paper"}, 10)
    assert failed["isError"] is True and "out of paper" in text_of(failed)


def test_http_answers_in_json_and_in_sse(http_session):
    assert text_of(http_session.call_tool("echo", {"text": "both ways"}, 10)) == "both ways"
    assert http_session.transport.session_id  # stateful server: the id was echoed on every later POST


def test_a_server_that_never_answers_times_out_the_call_only(session):
    started = time.monotonic()
    with pytest.raises(TimedOut):
        session.call_tool("hang", {}, 0.5)
    assert time.monotonic() - started < 5
    assert text_of(session.call_tool("echo", {"text": "still here"}, 10)) == "still here"


def test_concurrent_calls_on_one_session_each_get_their_own_answer(session):
    import threading

    results = {}

    def call(number):
        results[number] = text_of(session.call_tool("add", {"a": number, "b": 1000}, 10))

    threads = [threading.Thread(target=call, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == {number: str(number + 1000) for number in range(8)}


def test_tools_list_changed_is_followed(session):
    assert session.call_tool("learn", {"name": "fresh"}, 10)["isError"] is False
    wait_until(session.tools_changed.is_set, 10, message="notifications/tools/list_changed")
    assert "fresh" in {tool["name"] for tool in session.list_tools(10)}


def test_the_version_the_server_counters_with_is_accepted_and_cursors_are_followed():
    session = opened(scripted_config("--version", "2025-03-26"))
    try:
        assert session.protocol_version == "2025-03-26"
        assert [tool["name"] for tool in session.list_tools(10)] == ["first", "second"]
        assert text_of(session.call_tool("first", {}, 10)) == f"called first; offered {PROTOCOL_VERSION}"
    finally:
        session.close()


def test_an_unknown_counter_version_is_refused():
    with pytest.raises(McpError, match="protocol version '1999-01-01'"):
        opened(scripted_config("--version", "1999-01-01"))


def test_ping_is_answered_and_sampling_roots_elicitation_are_refused():
    session = opened(scripted_config())
    try:
        answers = json.loads(text_of(session.call_tool("ask", {}, 10)))
    finally:
        session.close()
    assert answers == {"ping": {}, "sampling/createMessage": -32601, "roots/list": -32601,
                       "elicitation/create": -32601}


def test_a_server_that_never_initializes_times_out():
    transport = StdioTransport(scripted_config("--silent"))
    session = Session(transport, "silent")
    with pytest.raises(TimedOut, match="initialize"):
        session.open(0.5)
    session.close()
    assert transport.process.poll() is not None


def test_stderr_goes_to_the_server_log(caplog):
    with caplog.at_level(logging.INFO, logger="mcp::tools"):
        session = opened(stdio_config())
        try:
            wait_until(lambda: any("tools server starting" in r.getMessage() for r in caplog.records
                                   if r.name == "mcp::tools"), 10, message="the server's stderr line")
        finally:
            session.close()


def test_the_child_gets_its_env_and_not_the_gateway_s(monkeypatch):
    monkeypatch.setenv("LOCKGATE_SECRET_FOR_TEST", "do-not-leak")
    session = opened(stdio_config(env={"GREETING": "hello"}))
    try:
        assert text_of(session.call_tool("environment", {"name": "GREETING"}, 10)) == "hello"
        assert text_of(session.call_tool("environment", {"name": "LOCKGATE_SECRET_FOR_TEST"}, 10)) == "<unset>"
    finally:
        session.close()


def test_a_crash_ends_the_session_with_the_exit_code(stdio_session):
    with pytest.raises(Disconnected, match="exited with code 7"):
        stdio_session.call_tool("crash", {"code": 7}, 10)
    assert stdio_session.closed_reason == "the server exited with code 7"
    assert stdio_session.attention.is_set()


def test_close_stops_a_child_that_outlives_its_input():
    session = opened(stdio_config(args=("stdio", "linger")))
    pid = int(text_of(session.call_tool("pid", {}, 10)))
    session.close()
    assert not _alive(pid)
    with pytest.raises(Disconnected):
        session.call_tool("pid", {}, 10)


def test_a_missing_command_says_so():
    config = stdio_config()
    config = type(config)(**{**config.__dict__, "command": "/nonexistent/mcp-server"})
    with pytest.raises(McpError, match="cannot start /nonexistent/mcp-server"):
        opened(config)


def test_loopback_urls_pass_the_ssrf_guard_only_when_allowed(http_url):
    with pytest.raises(McpError, match="refused: 127.0.0.1 resolves to a loopback address"):
        opened(http_config(http_url), allow_private=False)


def test_a_server_that_is_down_is_a_clear_error():
    with pytest.raises(McpError, match="cannot reach the server"):
        opened(http_config("http://127.0.0.1:9/mcp"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_kept_alive_connection_the_server_closed_is_replaced(http_json_url):
    session = opened(http_config(http_json_url))
    try:
        assert text_of(session.call_tool("echo", {"text": "first"}, 10)) == "first"
        assert session.transport._idle  # kept alive for the next POST
        time.sleep(5.5)  # uvicorn closes idle keep-alive connections after 5 s
        assert text_of(session.call_tool("echo", {"text": "second"}, 10)) == "second"
        assert not session.closed
    finally:
        session.close()
