"""MCP servers end to end: a real gunicorn with 2 workers, each connected to real MCP servers.

One server runs over stdio (a child of each worker), one over Streamable HTTP (uvicorn on
127.0.0.1); both are the SDK's FastMCP. Agent turns in sessions call their tools; reconnecting
replaces every worker's connection; a worker killed outright leaves no server process behind.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.mcp.conftest import http_server, stdio_table
from tests.support.http import Api, assert_envelope
from tests.support.server import RELAXED_LIMITS, child_pids, serve
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e

LIMITS = {"rate_limits": {**RELAXED_LIMITS["rate_limits"], "mcp_read": "10000/s", "mcp_write": "10000/s"}}


def mcp_config(url: str) -> dict:
    return {"mcp": {"restart_first_secs": 2.0, "restart_max_secs": 4.0, "allow_private_urls": True,
                    "servers": {"tools": stdio_table(("stdio", "linger")), "web": {"transport": "http", "url": url}}}}


@pytest.fixture(scope="module")
def mcp_url():
    with http_server() as url:
        yield url


@pytest.fixture(scope="module")
def server(tmp_path_factory, backend, mcp_url):
    with serve(tmp_path_factory.mktemp("mcp"), backend, {**LIMITS, **mcp_config(mcp_url)}) as instance:
        yield instance


@pytest.fixture
def api(server):
    client = Api(server)
    yield client
    client.close()


def servers(api) -> dict:
    response = api.get("/mcp")
    assert response.status_code == 200, response.text
    return {entry["name"]: entry for entry in response.json()["servers"]}


def all_connected(api, server):
    listed = servers(api)
    workers = len(server.worker_pids())
    ready = all(entry["status"] == "connected" and len(entry["workers"]) == workers for entry in listed.values())
    return listed if ready else None


def stdio_children(server) -> dict[int, list[int]]:
    """Each worker's tools-server children."""
    return {worker: [pid for pid in child_pids(worker) if _runs_tools_server(pid)] for worker in server.worker_pids()}


def _runs_tools_server(pid: int) -> bool:
    try:
        return b"tools_server.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_every_worker_connects_to_every_server(api, server):
    listed = wait_until(lambda: all_connected(api, server), 60, 0.2, lambda: f"all connected: {servers(api)}")
    assert listed["tools"]["transport"] == "stdio" and listed["web"]["transport"] == "http"
    assert {"add", "echo", "hang"} <= set(listed["tools"]["tools"])
    assert listed["tools"]["connected_at"].endswith("Z")
    assert all(len(children) == 1 for children in stdio_children(server).values())
    status = api.get("/status").json()
    assert status["mcp"] == {"connected": 2, "total": 2, "connections": 2 * len(server.worker_pids())}


def test_the_stdio_server_s_stderr_is_in_the_logs_under_its_module(api, server):
    def logged():
        entries = api.get("/logs", module="mcp::tools").json()["entries"]
        return [entry for entry in entries if entry["message"] == "tools server starting on stdio"]

    found = wait_until(logged, 20, 0.2, "the tools server's stderr line in the logs")
    assert found[0]["module"] == "mcp::tools"


def test_a_session_turn_calls_tools_over_stdio_and_http(api, server):
    wait_until(lambda: all_connected(api, server), 60, 0.2, "all connected")
    session = api.new_session()
    for _ in range(4):  # fresh connections reach both workers
        reply = api.send(session["id"], '/tool tools__add {"a": 20, "b": 22}').json()
        assert reply["content"] == "Tool tools__add returned: 42"
    reply = api.send(session["id"], '/tool web__echo {"text": "over http"}').json()
    assert reply["content"] == "Tool web__echo returned: over http"


def test_reconnect_replaces_the_connection_in_every_worker(api, server):
    before = wait_until(lambda: all_connected(api, server), 60, 0.2, "all connected")
    old_children = {pid for children in stdio_children(server).values() for pid in children}
    answered = api.post("/mcp/tools/reconnect")
    assert answered.status_code == 200 and answered.json() == {"name": "tools", "status": "reconnecting"}

    def replaced():
        listed = all_connected(api, server)
        if not listed or any(worker["connected_at"] <= before["tools"]["connected_at"]
                             for worker in listed["tools"]["workers"]):
            return None
        return listed

    wait_until(replaced, 60, 0.2, lambda: f"reconnected: {servers(api)['tools']}")
    new_children = {pid for children in stdio_children(server).values() for pid in children}
    assert new_children and not new_children & old_children
    assert all(_gone(pid) for pid in old_children)


def test_a_crashed_server_shows_its_error_then_is_restarted(api, server):
    wait_until(lambda: all_connected(api, server), 60, 0.2, "all connected")
    session = api.new_session()
    reply = api.send(session["id"], '/tool tools__crash {"code": 4}').json()
    assert "the server exited with code 4" in reply["content"]
    failed = wait_until(lambda: (entry := servers(api)["tools"])["status"] == "error" and entry, 10, 0.05,
                        "status error")
    assert failed["error"] == "the server exited with code 4"
    wait_until(lambda: all_connected(api, server), 60, 0.2, "connected again")
    again = api.send(session["id"], '/tool tools__add {"a": 1, "b": 1}').json()
    assert again["content"] == "Tool tools__add returned: 2"


def test_reconnect_needs_admin_and_a_known_name(api, server):
    assert_envelope(api.post("/mcp/nope/reconnect"), 404, "not_found")
    reader = Api(server, "read")
    try:
        assert_envelope(reader.post("/mcp/tools/reconnect"), 403, "forbidden")
        assert reader.get("/mcp").status_code == 200
    finally:
        reader.close()


def test_a_worker_killed_outright_leaves_no_server_behind(api, server):
    wait_until(lambda: all_connected(api, server), 60, 0.2, "all connected")
    worker, children = next(iter(stdio_children(server).items()))
    assert children
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: all(_gone(pid) for pid in children), 20, 0.1, "the killed worker's MCP server gone")
    # gunicorn replaces the worker, which connects again.
    wait_until(lambda: all(len(found) == 1 for found in stdio_children(server).values())
               and worker not in server.worker_pids(), 60, 0.2, "the new worker's MCP server")


def test_stopping_the_gateway_stops_its_servers(server_factory, mcp_url):
    instance = server_factory({**LIMITS, **mcp_config(mcp_url)})
    api = Api(instance)
    try:
        wait_until(lambda: all_connected(api, instance), 60, 0.2, "all connected")
        children = [pid for found in stdio_children(instance).values() for pid in found]
    finally:
        api.close()
    assert len(children) == 2
    instance.stop()
    assert all(_gone(pid) for pid in children)
