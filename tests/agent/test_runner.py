import json

import pytest

from app.agent import runner
from app.agent.builtin_tools import install
from app.agent.loop import ToolCallFinished, ToolCallStarted, TurnResult
from app.agent.memory import open_memory
from app.agent.providers import Message, ProviderError, TextDelta
from app.agent.runner import MEMORY_HEADER, Contribution, Conversation, Identity
from app.agent.tools import Tool, ToolPolicy, ToolRegistry
from app.core.db import connection
from app.core.settings import Settings
from tests.agent.providers.fake_llm import FakeLLMServer
from tests.agent.scripted import ScriptedProvider, reply
from tests.support.config import write_config

OPEN_SCHEMA = {"type": "object", "properties": {"step": {"type": "integer"}}, "additionalProperties": False}
EXECUTION = Identity(execution_id="exec_1", user_id="ada")


@pytest.fixture
def settings(tmp_path):
    return Settings(tmp_path / "none.toml")


@pytest.fixture
def ran():
    """The calls each test tool received: (tool name, arguments, context)."""
    return []


@pytest.fixture
def registry(ran):
    def recorder(name):
        def handler(arguments, context):
            ran.append((name, arguments, context))
            return f"{name} ran"
        return handler

    registry = ToolRegistry()
    registry.register(Tool("count", "Counts", OPEN_SCHEMA, recorder("count"), tags=frozenset({"counter"})))
    registry.register(Tool("read_file", "Reads a file", OPEN_SCHEMA, recorder("read_file"),
                           tags=frozenset({"filesystem"})))
    registry.register(Tool("shell", "Runs a command", OPEN_SCHEMA, recorder("shell"),
                           tags=frozenset({"filesystem", "process"})))
    return registry


def finished(events):
    return [event.record for event in events if isinstance(event, ToolCallFinished)]


def test_an_execution_runs_without_a_session_and_searches_its_users_memory(app, ran):
    settings = app.extensions["lockgate"].settings
    with connection():
        open_memory("sqlite").save("sess_earlier", "ada", 2, "User: where is the lighthouse?\nAssistant: on the cape")
        open_memory("sqlite").save("sess_other", "bob", 2, "User: the lighthouse is mine\nAssistant: noted")
    registry = ToolRegistry()
    install(registry)
    registry.register(Tool("whoami", "Who is asking", {"type": "object"},
                           lambda arguments, context: ran.append(context) or "noted"))
    provider = ScriptedProvider(reply(calls=[("memory_search", {"query": "lighthouse"}), ("whoami", {})]),
                                reply("It is on the cape."))
    result = runner.answer(settings, Conversation("where was that lighthouse?"), EXECUTION,
                           registry=registry, provider=provider)
    search, whoami = result.tool_calls
    assert not search.is_error
    assert [found["content"] for found in json.loads(search.result)["results"]] == [
        "User: where is the lighthouse?\nAssistant: on the cape"]
    (context,) = ran
    assert (context.execution_id, context.session_id, context.user_id) == ("exec_1", None, "ada")
    assert context.settings is settings
    assert result.content == "It is on the cape."


def test_an_execution_without_a_user_has_no_memories_to_search(app):
    settings = app.extensions["lockgate"].settings
    with connection():
        open_memory("sqlite").save("sess_earlier", None, 2, "User: lighthouse\nAssistant: cape")
    registry = ToolRegistry()
    install(registry)
    provider = ScriptedProvider(reply(calls=[("memory_search", {"query": "lighthouse"})]), reply("Nothing."))
    result = runner.answer(settings, Conversation("lighthouse?"), Identity(execution_id="exec_2"),
                           registry=registry, provider=provider)
    (search,) = result.tool_calls
    assert (search.is_error, json.loads(search.result)) == (False, {"results": []})


@pytest.mark.parametrize("ids", [{}, {"session_id": "sess_1", "execution_id": "exec_1"}])
def test_an_identity_names_exactly_one_owner(ids):
    with pytest.raises(ValueError, match="exactly one"):
        Identity(**ids, user_id="ada")


def test_a_forbidden_tool_is_neither_offered_nor_run(settings, registry, ran):
    provider = ScriptedProvider(reply(calls=[("read_file", {"step": 1}), ("count", {"step": 2})]), reply("Done."))
    events = list(runner.run(settings, Conversation("go"), EXECUTION, policy=ToolPolicy(deny_tags={"filesystem"}),
                             registry=registry, provider=provider))
    assert [spec.name for spec in provider.requests[0][1]] == ["count"]
    refused, counted = finished(events)
    assert refused.is_error and "no tool named 'read_file'" in refused.result
    assert (counted.is_error, counted.result) == (False, "count ran")
    assert [(name, arguments) for name, arguments, _ in ran] == [("count", {"step": 2})]
    # The model still got an answer for the refused call, as every call needs one.
    tool_messages = [m for m in provider.requests[1][0] if m.role == "tool"]
    assert [m.tool_call_id for m in tool_messages] == [refused.id, counted.id]
    assert isinstance(events[-1], TurnResult) and events[-1].content == "Done."


@pytest.mark.parametrize("policy, offered", [
    (ToolPolicy(), ["count", "read_file", "shell"]),
    (ToolPolicy(allow={"count"}), ["count"]),
    (ToolPolicy(allow_tags={"filesystem"}), ["read_file", "shell"]),
    (ToolPolicy(allow={"count"}, allow_tags={"process"}), ["count", "shell"]),
    (ToolPolicy(deny={"shell"}), ["count", "read_file"]),
    (ToolPolicy(allow_tags={"filesystem"}, deny_tags={"process"}), ["read_file"]),
    (ToolPolicy(allow={"shell"}, deny={"shell"}), []),
    (ToolPolicy(allow=[]), []),
])
def test_a_policy_allows_and_denies_by_name_and_by_tag(settings, registry, policy, offered):
    assert [tool.name for tool in registry.offered(settings, policy)] == offered


def test_a_policy_refuses_a_bare_string_for_a_list_of_names():
    with pytest.raises(TypeError, match="not the string 'shell'"):
        ToolPolicy(deny="shell")


def test_the_default_tools_are_everything_registered_that_the_settings_allow(tmp_path):
    off = Settings(tmp_path / "none.toml", overrides={"memory.backend": "none"})
    provider = ScriptedProvider(reply("hi"))
    runner.answer(off, Conversation("hi"), EXECUTION, provider=provider)
    assert [spec.name for spec in provider.requests[0][1]] == ["current_time"]
    deny_time = ToolPolicy(deny_tags={"time"})
    provider = ScriptedProvider(reply("hi"))
    runner.answer(off, Conversation("hi"), EXECUTION, policy=deny_time, provider=provider)
    assert provider.requests[0][1] == []


def test_prompt_contributions_keep_their_order(settings, registry):
    contributions = [
        runner.instructions("  You are the harbour master.  "),
        Contribution("skill:tides", "Give tide times in UTC."),
        Contribution("skill:empty", "   "),
        runner.memory_notes(["User: ships?\n  Assistant: four"]),
    ]
    history = [Message("user", "hello"), Message("assistant", "hi")]
    provider = ScriptedProvider(reply("Four ships."))
    runner.answer(settings, Conversation("how many ships?", history), EXECUTION, contributions=contributions,
                  registry=registry, provider=provider)
    sent = provider.requests[0][0]
    assert sent == runner.prompt(Conversation("how many ships?", history), contributions)
    assert sent[0] == Message("system", "You are the harbour master.\n\nGive tide times in UTC.\n\n"
                                        f"{MEMORY_HEADER}\n- User: ships? Assistant: four")
    assert sent[1:] == [*history, Message("user", "how many ships?")]
    reordered = runner.prompt(Conversation("x"), [contributions[1], contributions[0]])
    assert reordered[0].content == "Give tide times in UTC.\n\nYou are the harbour master."


def test_no_contributions_no_system_message():
    assert runner.prompt(Conversation("hi"), [runner.instructions(""), runner.memory_notes([])]) == [
        Message("user", "hi")]


def test_streaming_and_not_streaming_give_the_same_result(settings, registry):
    # The echo provider (the default [provider]) asks for the tool, then reports its result.
    conversation = Conversation('/tool count {"step": 3}', [Message("user", "before"), Message("assistant", "ok")])
    whole = runner.answer(settings, conversation, EXECUTION, registry=registry)
    events = list(runner.run(settings, conversation, EXECUTION, registry=registry, stream=True))
    streamed = events[-1]
    assert streamed == whole
    assert whole.content == "Tool count returned: count ran" and len(whole.tool_calls) == 1
    kinds = [type(event) for event in events[:-1]]
    assert kinds[:2] == [ToolCallStarted, ToolCallFinished] and set(kinds[2:]) == {TextDelta}
    assert "".join(event.text for event in events if isinstance(event, TextDelta)) == whole.content


def test_provider_errors_surface_as_provider_error(settings, tmp_path):
    with pytest.raises(ProviderError, match="echo provider asked to fail"):
        runner.answer(settings, Conversation("/fail"), EXECUTION)
    with FakeLLMServer() as fake_llm:
        remote = Settings(tmp_path / "none.toml", overrides={
            "provider.name": "openai", "provider.base_url": fake_llm.url + "/v1", "provider.max_retries": 0})
        fake_llm.fail_next(503)
        with pytest.raises(ProviderError) as caught:
            list(runner.run(remote, Conversation("hi"), EXECUTION, stream=True))
    assert caught.value.status == 503


def test_the_provider_is_built_from_the_settings_of_each_run(tmp_path):
    path = write_config(tmp_path / "lockgate.toml", {"provider": {"name": "echo"}})
    settings = Settings(path)
    assert runner.answer(settings, Conversation("hi"), EXECUTION).content == "echo: hi"
    with FakeLLMServer() as fake_llm:
        fake_llm.queue_reply(text="from the remote model")
        write_config(path, {"provider": {"name": "openai", "model": "gpt-test", "base_url": fake_llm.url + "/v1"}})
        assert settings.refresh()
        assert runner.answer(settings, Conversation("hi"), EXECUTION).content == "from the remote model"
        assert fake_llm.requests[-1].json["model"] == "gpt-test"
