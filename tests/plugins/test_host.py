"""A worker's plugins: loading, the registry, reloads that swap atomically, faults, disabling, shared state."""

import threading
import time

import pytest

from app.agent import builtin_tools
from app.agent.providers import ToolCall
from app.agent.tools import ToolContext, ToolRegistry, execute
from app.core.db import connection
from app.plugins import host as hosts
from app.plugins import service
from app.plugins.models import PluginState
from tests.plugins import wat
from tests.support.wait import wait_until

SLOW = 600_000_000  # about two seconds of counting


@pytest.fixture
def plugin_root(tmp_path):
    root = tmp_path / "plugins"
    root.mkdir()
    wat.copy_example(root)
    return root


@pytest.fixture
def app(app_factory, plugin_root):
    return app_factory({"plugins": {"dir": str(plugin_root), "max_fuel": 10**12, "max_execution_time_ms": 30000}})


@pytest.fixture
def registry():
    made = ToolRegistry()
    builtin_tools.install(made)
    return made


@pytest.fixture
def make_host(app, registry, monkeypatch):
    def make(owner="worker-1", current=True):
        host = hosts.PluginHost(app.extensions["lockgate"], registry, owner)
        if current:
            monkeypatch.setattr(hosts, "_current", host)
        host.load_all()
        return host

    return make


def call(registry, app, name, arguments=None):
    return execute(registry.get(name), ToolCall("call_1", name, arguments or {}),
                   ToolContext(settings=app.extensions["lockgate"].settings))


def rows(name):
    with connection():
        return {row.owner: row for row in PluginState.select().where(PluginState.name == name)}


def listed():
    with connection():
        return {plugin["name"]: plugin for plugin in service.list_plugins()}


def test_plugins_are_loaded_and_their_tools_registered(make_host, registry, app, plugin_root):
    wat.write_simple(plugin_root, "spin", "spin", wat.SPIN)
    (plugin_root / "broken").mkdir()
    (plugin_root / "broken" / "plugin.toml").write_text("[plugin]\nname = 'broken'\n")
    make_host()
    weather = registry.get("get_weather")
    assert weather.source == "plugin:weather" and {"plugin", "plugin:weather", "wasm"} <= weather.tags
    assert registry.get("spin") is not None
    result = call(registry, app, "get_weather", {"city": "Kyoto"})
    assert not result.is_error and '"forecast": "sunny"' in result.content
    # The registry checks arguments against the schema get_spec gave.
    assert "invalid arguments" in call(registry, app, "get_weather", {}).content

    plugins = listed()
    assert plugins["weather"]["status"] == "loaded"
    assert plugins["weather"]["capabilities"] == ["tool:get_weather"]
    assert plugins["weather"]["memory_usage_bytes"] == 65536
    assert plugins["broken"]["status"] == "error"
    assert plugins["broken"]["error"] == "[plugin] version must be a non-empty string"
    assert service.status_counts(None) == {"plugins": {"loaded": 2, "total": 3}}


def test_a_stopped_call_is_an_error_result_and_the_next_call_gets_a_fresh_instance(make_host, registry, app,
                                                                                    plugin_root):
    wat.write_simple(plugin_root, "spin", "spin", wat.SPIN, resources={"max_fuel": 1_000_000})
    host = make_host()
    first = call(registry, app, "spin")
    assert first.is_error
    assert first.content == "Error: the plugin spin was stopped: used up its fuel (1000000 instructions)"
    assert host.entries["spin"].error == "spin was stopped: used up its fuel (1000000 instructions)"
    assert listed()["spin"]["error"] == host.entries["spin"].error
    assert listed()["spin"]["status"] == "loaded"  # it is still there: the next call gets a fresh instance
    assert call(registry, app, "spin").is_error
    assert not call(registry, app, "get_weather", {"city": "Rome"}).is_error


def test_reload_while_a_call_runs_lets_it_finish_on_its_version(make_host, registry, app, plugin_root):
    wat.write_simple(plugin_root, "slow", "slow", wat.count_to(SLOW), '{"output":"v1"}', version="1.0.0")
    host = make_host()
    results = []
    worker = threading.Thread(target=lambda: results.append(call(registry, app, "slow").content))
    worker.start()
    time.sleep(0.2)
    wat.write_simple(plugin_root, "slow", "slow", wat.count_to(1000), '{"output":"v2"}', version="2.0.0")
    began = time.monotonic()
    entry = host.reload("slow")
    assert entry.loaded.version == "2.0.0"
    assert time.monotonic() - began < 0.5  # the reload did not wait for the running call
    assert worker.is_alive()
    worker.join(10)
    assert results == ["v1"]
    assert call(registry, app, "slow").content == "v2"
    assert rows("slow")["worker-1"].version == "2.0.0"


def test_a_broken_new_version_keeps_the_old_one_running(make_host, registry, app, plugin_root):
    host = make_host()
    (plugin_root / "weather" / "plugin.wasm").write_bytes(b"\0asm not really")
    with pytest.raises(hosts.PluginTrouble, match="not a valid WebAssembly module"):
        host.reload("weather")
    assert host.entries["weather"].loaded.version == "1.2.0"
    assert not call(registry, app, "get_weather", {"city": "Oslo"}).is_error
    shown = listed()["weather"]
    assert (shown["status"], shown["version"]) == ("loaded", "1.2.0")
    assert shown["error"].startswith("version not swapped in, 1.2.0 keeps running: it is not a valid WebAssembly")


def test_disabled_withdraws_the_tools_and_survives_a_restart(make_host, registry, app):
    make_host()
    settings = app.extensions["lockgate"].settings
    assert service.set_disabled(settings, "weather", True) == {"name": "weather", "status": "disabled"}
    assert registry.get("get_weather") is None
    assert listed()["weather"]["status"] == "disabled"
    assert service.status_counts(None) == {"plugins": {"loaded": 0, "total": 1}}

    # A worker starting now (a restart) finds it disabled: loaded, its tools not offered.
    fresh_registry = ToolRegistry()
    restarted = hosts.PluginHost(app.extensions["lockgate"], fresh_registry, "worker-2")
    restarted.load_all()
    assert restarted.entries["weather"].loaded is not None and restarted.entries["weather"].disabled
    assert fresh_registry.get("get_weather") is None

    assert service.set_disabled(settings, "weather", False) == {"name": "weather", "status": "loaded"}
    assert registry.get("get_weather") is not None
    restarted.on_event("plugin.enabled", {"name": "weather"})
    assert fresh_registry.get("get_weather") is not None


def test_a_reload_reaches_the_other_workers_through_its_event(make_host, app, plugin_root):
    here = make_host("worker-1")
    there = make_host("worker-2", current=False)
    wat.write_simple(plugin_root, "weather", "get_weather", answer='{"output":"rain"}', version="1.3.0")
    here.reload("weather")
    there.on_event("plugin.reloaded", {"name": "weather", "version": "1.3.0", "worker": "worker-1"})
    wait_until(lambda: there.entries["weather"].loaded.version == "1.3.0", 10)
    # Its own event does not make the worker that reloaded reload again.
    loaded = here.entries["weather"].loaded
    here.on_event("plugin.reloaded", {"name": "weather", "version": "1.3.0", "worker": "worker-1"})
    time.sleep(0.2)
    assert here.entries["weather"].loaded is loaded


def test_memory_usage_is_measured_from_the_instance(make_host, registry, app, plugin_root):
    wat.write_simple(plugin_root, "grow", "grow", wat.GROW_ONE_PAGE)
    make_host()
    before = rows("grow")["worker-1"].memory_usage_bytes
    assert before == 65536
    for _ in range(3):
        assert not call(registry, app, "grow").is_error
    assert rows("grow")["worker-1"].memory_usage_bytes == before + 3 * 65536
    assert listed()["grow"]["memory_usage_bytes"] == before + 3 * 65536


def test_a_tool_name_taken_by_another_source_refuses_the_plugin(make_host, registry, plugin_root):
    wat.write_simple(plugin_root, "clock", "current_time")
    host = make_host()
    assert host.entries["clock"].loaded is None
    assert host.entries["clock"].error == "its tool current_time has the name of a tool from builtin"
    assert registry.get("current_time").source == "builtin"


def test_get_spec_must_match_the_manifest(make_host, plugin_root):
    wat.write_plugin(plugin_root, "liar", wat.module([wat.tool("other")], ""), ["declared"])
    host = make_host()
    assert host.entries["liar"].error == "get_spec describes the tool 'other', which plugin.toml does not declare"


def test_the_api(app, make_host, auth, plugin_root):
    make_host()
    client = app.test_client()
    listing = client.get("/api/v1/plugins", headers=auth("read"))
    assert listing.status_code == 200
    assert [plugin["name"] for plugin in listing.json["plugins"]] == ["weather"]
    assert client.post("/api/v1/plugins/weather/reload", headers=auth("write")).status_code == 403
    reloaded = client.post("/api/v1/plugins/weather/reload", headers=auth("admin"))
    assert reloaded.status_code == 200, reloaded.json
    assert reloaded.json == {"name": "weather", "status": "loaded", "version": "1.2.0"}

    missing = client.post("/api/v1/plugins/nowhere/reload", headers=auth("admin"))
    assert missing.status_code == 404
    assert missing.json["error"]["details"] == {"plugins": ["weather"]}

    (plugin_root / "weather" / "plugin.toml").write_text("[plugin]\nname = 'weather'\nversion = '9'\n")
    refused = client.post("/api/v1/plugins/weather/reload", headers=auth("admin"))
    assert refused.status_code == 422
    assert refused.json["error"]["code"] == "plugin_refused"
    assert refused.json["error"]["details"] == {"reason": "the plugin declares no [[capabilities]]",
                                                "running_version": "1.2.0"}

    assert client.post("/api/v1/plugins/weather/disable", headers=auth("admin")).json == {
        "name": "weather", "status": "disabled"}
    assert client.get("/api/v1/status", headers=auth("read")).json["plugins"] == {"loaded": 0, "total": 1}
    assert client.post("/api/v1/plugins/weather/enable", headers=auth("admin")).json == {
        "name": "weather", "status": "loaded"}
    assert client.get("/api/v1/status", headers=auth("read")).json["plugins"] == {"loaded": 1, "total": 1}


def test_without_a_running_host_actions_are_unavailable(app, auth, monkeypatch):
    monkeypatch.setattr(hosts, "_current", None)
    answer = app.test_client().post("/api/v1/plugins/weather/reload", headers=auth("admin"))
    assert answer.status_code == 503
    assert answer.json["error"]["code"] == "service_unavailable"
