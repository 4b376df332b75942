"""Each worker's MCP connections on the real database backends: units, shared state, tools, agent turns.

A worker is simulated in this process by a supervisor of its own and a tool registry of its own;
the servers are real processes (the SDK's FastMCP over stdio and Streamable HTTP).
"""

from __future__ import annotations

import json

import pytest

from app.agent.runner import Conversation, Identity, answer
from app.agent.tools import ToolPolicy, ToolRegistry
from app.core.db import connection
from app.core.models import Event, UnitState
from app.core.supervisor import Supervisor
from app.mcp import service
from app.mcp.connection import Manager
from tests.mcp.conftest import stdio_table
from tests.support.wait import wait_until

FAST = {"restart_first_secs": 0.5, "restart_max_secs": 2.0, "allow_private_urls": True}
TOOLS = {"transport": "stdio", **stdio_table(), "tags": ["calculator"]}


class Worker:
    def __init__(self, app, owner: str):
        self.app = app
        self.state = app.extensions["lockgate"]
        self.supervisor = Supervisor(owner=owner)
        self.registry = ToolRegistry()
        self.manager = Manager(self.state, self.supervisor, self.registry)

    def start(self) -> Worker:
        self.manager.reconcile(self.state.settings)
        self.supervisor.start(listen=False)
        return self

    def servers(self) -> dict:
        with connection():
            return {server["name"]: server for server in service.list_servers(self.state.settings)}

    def status_of(self, name: str, status: str):
        server = self.servers()[name]
        return server if server["status"] == status else None

    def turn(self, message: str, **options):
        return answer(self.state.settings, Conversation(message), Identity(session_id="sess_mcp"),
                      registry=self.registry, **options)

    def pid(self, tool: str = "tools__pid") -> int:
        return int(self.turn(f"/tool {tool}").content.rsplit(" ", 1)[1])


@pytest.fixture
def worker(app_factory):
    started = []

    def start(servers: dict, **mcp) -> Worker:
        app = app_factory({"mcp": {"servers": servers, **FAST, **mcp}})
        started.append(Worker(app, f"test-host:{len(started)}:mcp").start())
        return started[-1]

    yield start
    for each in started:
        each.supervisor.stop()


def connected(worker: Worker, name: str = "tools") -> dict:
    return wait_until(lambda: worker.status_of(name, "connected"), 30, 0.1,
                      lambda: f"{name} connected: {worker.servers().get(name)}")


def test_a_server_connects_and_its_tools_join_the_registry_with_tags(worker):
    one = worker({"tools": TOOLS})
    server = connected(one)
    assert server["transport"] == "stdio" and server["error"] is None
    assert {"add", "echo", "hang", "learn"} <= set(server["tools"])
    assert [entry["owner"] for entry in server["workers"]] == ["test-host:0:mcp"]
    add = one.registry.get("tools__add")
    assert add.source == "mcp:tools" and add.tags >= {"mcp", "mcp:tools", "calculator"}
    assert add.parameters["required"] == ["a", "b"]
    assert "read_only" in one.registry.get("tools__echo").tags
    assert service.live_connections() == 1
    assert service.status_counts(one.state.settings) == {"mcp": {"connected": 1, "total": 1, "connections": 1}}


def test_an_agent_turn_calls_an_mcp_tool_and_reads_its_result(worker):
    one = worker({"tools": TOOLS})
    connected(one)
    result = one.turn('/tool tools__add {"a": 2, "b": 40}')
    assert result.content == "Tool tools__add returned: 42"
    failed = one.turn('/tool tools__fail {"reason": "disk full"}')
    assert failed.content.startswith("Tool tools__fail returned: Error: ") and "disk full" in failed.content
    refused = one.turn('/tool tools__add {"a": "two", "b": 1}')
    assert "invalid arguments for tools__add" in refused.content  # the server's schema, checked before the call


def test_policies_apply_to_mcp_tools_by_their_tags(worker):
    one = worker({"tools": TOOLS})
    connected(one)
    assert one.turn("/tool tools__pid", policy=ToolPolicy(deny_tags={"mcp:tools"})).content == \
        "echo: unknown tool tools__pid"
    assert one.turn('/tool tools__echo {"text": "ro"}', policy=ToolPolicy(allow_tags={"read_only"})).content == \
        "Tool tools__echo returned: ro"
    assert one.turn("/tool tools__pid", policy=ToolPolicy(allow_tags={"read_only"})).content == \
        "echo: unknown tool tools__pid"


def test_a_hanging_server_times_out_the_call_not_the_turn(worker):
    one = worker({"tools": {**TOOLS, "timeout_secs": 0.5}})
    connected(one)
    result = one.turn("/tool tools__hang")
    assert result.content == "Tool tools__hang returned: Error: the MCP server tools did not answer within 0.5s"
    assert one.turn('/tool tools__echo {"text": "after"}').content == "Tool tools__echo returned: after"


def test_a_crashed_server_is_restarted_and_says_so_meanwhile(worker):
    one = worker({"tools": TOOLS}, restart_first_secs=1.5)
    connected(one)
    before = one.pid()
    crashed = one.turn('/tool tools__crash {"code": 5}')
    assert "the server exited with code 5" in crashed.content
    failed = wait_until(lambda: one.status_of("tools", "error"), 10, 0.05, "status error")
    assert failed["error"] == "the server exited with code 5"
    assert one.registry.get("tools__add") is None  # withdrawn while disconnected
    connected(one)
    assert one.pid() != before
    with connection():
        unit = UnitState.get(UnitState.id == "mcp:tools@test-host:0:mcp")
    assert unit.restarts >= 1 and "exited with code 5" in unit.last_error


def test_a_restart_reconnects_with_a_new_process(worker):
    one = worker({"tools": TOOLS})
    first = connected(one)
    before = one.pid()
    assert one.supervisor.restart_unit("mcp:tools")  # what POST /reconnect makes every worker do
    wait_until(lambda: (server := one.status_of("tools", "connected")) and
               server["connected_at"] > first["connected_at"], 30, 0.1, "reconnected")
    assert one.pid() != before


def test_a_changed_tool_list_is_registered_again(worker):
    one = worker({"tools": TOOLS})
    connected(one)
    assert one.turn('/tool tools__learn {"name": "fresh"}').content == "Tool tools__learn returned: added fresh"
    wait_until(lambda: one.registry.get("tools__fresh"), 10, 0.05, "tools__fresh registered")
    assert one.turn("/tool tools__fresh").content == "Tool tools__fresh returned: fresh was learned"
    wait_until(lambda: "fresh" in one.servers()["tools"]["tools"], 10, 0.05, "the state lists fresh")


def test_http_servers_connect_through_the_same_units(worker, http_url):
    one = worker({"web": {"transport": "http", "url": http_url, "tool_prefix": "w"}})
    server = connected(one, "web")
    assert server["transport"] == "http"
    assert one.turn('/tool w__add {"a": 1, "b": 2}').content == "Tool w__add returned: 3"


def test_private_urls_are_refused_by_default_and_say_why(worker, http_url):
    one = worker({"web": {"transport": "http", "url": http_url}}, allow_private_urls=False)
    failed = wait_until(lambda: one.status_of("web", "error"), 20, 0.1, "status error")
    assert "loopback address" in failed["error"] and "allow_private_urls" in failed["error"]


def test_a_broken_table_is_that_server_s_error_only(worker):
    one = worker({"tools": TOOLS, "odd": {"transport": "ftp"}})
    connected(one)
    failed = wait_until(lambda: one.status_of("odd", "error"), 20, 0.1, "status error")
    assert failed["error"] == "mcp.servers.odd.transport: expected one of stdio, http"
    assert service.status_counts(one.state.settings)["mcp"] == {"connected": 1, "total": 2, "connections": 1}


def test_configuration_changes_reach_the_connections(worker):
    one = worker({"tools": TOOLS})
    connected(one)
    client, token = one.app.test_client(), _admin_token()
    headers = {"Authorization": f"Bearer {token}"}
    disabled = client.patch("/api/v1/config", json={"mcp.servers.tools.enabled": False}, headers=headers)
    assert disabled.status_code == 200, disabled.get_json()
    one.manager.reconcile(one.state.settings)
    wait_until(lambda: one.registry.get("tools__add") is None, 10, 0.05, "tools withdrawn")
    assert one.servers()["tools"]["status"] == "disabled"
    wait_until(lambda: service.live_connections() == 0, 10, 0.05, "no live connection")
    client.patch("/api/v1/config", json={"mcp.servers.tools.enabled": True}, headers=headers)
    one.manager.reconcile(one.state.settings)
    connected(one)
    assert one.registry.get("tools__add") is not None


def test_the_api_lists_servers_and_asks_every_worker_to_reconnect(worker):
    one = worker({"tools": TOOLS, "off": {**TOOLS, "enabled": False}})
    connected(one)
    client, admin, reader = one.app.test_client(), _admin_token(), _token("read")
    listed = client.get("/api/v1/mcp", headers={"Authorization": f"Bearer {reader}"}).get_json()
    by_name = {server["name"]: server for server in listed["servers"]}
    assert by_name["tools"]["status"] == "connected" and "add" in by_name["tools"]["tools"]
    assert by_name["tools"]["connected_at"].endswith("Z")
    assert by_name["off"]["status"] == "disabled"
    assert client.post("/api/v1/mcp/tools/reconnect", headers={"Authorization": f"Bearer {reader}"}
                       ).status_code == 403
    answered = client.post("/api/v1/mcp/tools/reconnect", headers={"Authorization": f"Bearer {admin}"})
    assert (answered.status_code, answered.get_json()) == (200, {"name": "tools", "status": "reconnecting"})
    with connection():
        published = Event.select().where(Event.topic == "unit.restart").order_by(Event.id.desc()).first()
    assert json.loads(published.payload) == {"name": "mcp:tools"}
    missing = client.post("/api/v1/mcp/nope/reconnect", headers={"Authorization": f"Bearer {admin}"})
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    off = client.post("/api/v1/mcp/off/reconnect", headers={"Authorization": f"Bearer {admin}"})
    assert off.status_code == 409
    status = client.get("/api/v1/status", headers={"Authorization": f"Bearer {reader}"}).get_json()
    assert status["mcp"] == {"connected": 1, "total": 1, "connections": 1}


def _token(scope: str) -> str:
    from app.core.auth import create_token

    with connection():
        return create_token(f"mcp-{scope}", [scope])[1]


def _admin_token() -> str:
    return _token("admin")
