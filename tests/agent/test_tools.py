import json

import pytest
from jsonschema.exceptions import SchemaError

from app.agent.builtin_tools import BUILTIN_TOOLS, default_registry
from app.agent.providers import ToolCall
from app.agent.tools import MAX_RESULT_CHARS, Tool, ToolContext, ToolError, ToolRegistry, execute
from app.core.settings import Settings

ADD_SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}


def add(arguments, context):
    return {"sum": arguments["a"] + arguments["b"]}


@pytest.fixture
def context(tmp_path):
    return ToolContext(session_id="sess_test", user_id="u1", settings=Settings(tmp_path / "none.toml"))


@pytest.fixture
def registry():
    registry = ToolRegistry()
    registry.register(Tool("add", "Add two integers", ADD_SCHEMA, add))
    return registry


def call(name, **arguments):
    return ToolCall(id="call_1", name=name, arguments=arguments)


def call_tool(registry, tool_call, context):
    """What the loop does with a call: run the registered tool of that name, if any."""
    return execute(registry.get(tool_call.name), tool_call, context)


def test_a_tool_is_called_with_its_json_arguments(registry, context):
    result = call_tool(registry, call("add", a=2, b=3), context)
    assert json.loads(result.content) == {"sum": 5}
    assert result.is_error is False
    assert result.duration_ms >= 0


def test_arguments_that_break_the_schema_come_back_as_an_error(registry, context):
    missing = call_tool(registry, call("add", a=2), context)
    assert missing.is_error and "'b' is a required property" in missing.content
    wrong_type = call_tool(registry, call("add", a=2, b="three"), context)
    assert wrong_type.is_error and wrong_type.content.startswith("Error: invalid arguments for add: b:")
    extra = call_tool(registry, call("add", a=1, b=2, c=3), context)
    assert extra.is_error and "'c' was unexpected" in extra.content


def test_undecodable_arguments_are_reported_to_the_model(registry, context):
    result = call_tool(registry, ToolCall(id="call_1", name="add", arguments={"_raw": '{"a": 1,'}), context)
    assert result.is_error
    assert 'not a JSON object: {"a": 1,' in result.content


def test_an_unknown_tool_is_an_error_result(registry, context):
    result = call_tool(registry, call("subtract", a=1, b=2), context)
    assert result.is_error and "no tool named 'subtract'" in result.content


def test_a_failing_tool_returns_its_error_instead_of_raising(registry, context):
    def explode(arguments, context):
        raise RuntimeError("disk on fire")

    def refuse(arguments, context):
        raise ToolError("not allowed here")

    registry.register(Tool("explode", "Fails", {"type": "object"}, explode))
    registry.register(Tool("refuse", "Refuses", {"type": "object"}, refuse))
    assert call_tool(registry, call("explode"), context).content == "Error: explode failed: RuntimeError: disk on fire"
    assert call_tool(registry, call("refuse"), context).content == "Error: not allowed here"


def test_long_results_are_cut(registry, context):
    registry.register(Tool("chatty", "Talks", {"type": "object"}, lambda arguments, context: "x" * 50_000))
    result = call_tool(registry, call("chatty"), context)
    assert len(result.content) < MAX_RESULT_CHARS + 100
    assert result.content.endswith("[truncated: the result had 50000 characters]")


def test_registration_rules(registry):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(Tool("add", "again", ADD_SCHEMA, add))
    registry.register(Tool("add", "replaced", ADD_SCHEMA, add), replace=True)
    assert registry.get("add").description == "replaced"
    with pytest.raises(ValueError, match="invalid tool name"):
        registry.register(Tool("has space", "x", ADD_SCHEMA, add))
    with pytest.raises(ValueError, match="must describe an object"):
        registry.register(Tool("listy", "x", {"type": "array"}, add))
    with pytest.raises(SchemaError):
        registry.register(Tool("broken", "x", {"type": "object", "properties": {"a": {"type": "integr"}}}, add))


def test_a_source_withdraws_all_its_tools(registry):
    for name in ("read_file", "write_file"):
        registry.register(Tool(name, "fs", {"type": "object"}, add, source="mcp:filesystem"))
    registry.register(Tool("get_weather", "w", {"type": "object"}, add, source="plugin:weather"))
    assert sorted(registry.unregister_source("mcp:filesystem")) == ["read_file", "write_file"]
    assert [tool.name for tool in registry.tools()] == ["add", "get_weather"]
    registry.unregister("get_weather")
    assert [spec.name for spec in (tool.spec() for tool in registry.tools())] == ["add"]


def test_offered_tools_follow_the_settings(tmp_path):
    registry = default_registry()
    assert {tool.name for tool in BUILTIN_TOOLS} <= {tool.name for tool in registry.tools()}
    on = Settings(tmp_path / "none.toml")
    off = Settings(tmp_path / "none.toml", overrides={"memory.backend": "none"})
    assert {"current_time", "memory_search"} <= {tool.name for tool in registry.offered(on)}
    offered_off = {tool.name for tool in registry.offered(off)}
    assert "memory_search" not in offered_off and "current_time" in offered_off


def test_current_time(context):
    registry = default_registry()
    utc = json.loads(call_tool(registry, call("current_time"), context).content)
    assert utc["timezone"] == "UTC" and utc["utc"].endswith("Z") and utc["local"].endswith("+00:00")
    tokyo = json.loads(call_tool(registry, call("current_time", timezone="Asia/Tokyo"), context).content)
    assert tokyo["local"].endswith("+09:00")
    bad = call_tool(registry, call("current_time", timezone="Mars/Olympus"), context)
    assert bad.is_error and "unknown time zone 'Mars/Olympus'" in bad.content
