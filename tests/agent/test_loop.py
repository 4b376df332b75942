import pytest

from app.agent.loop import (
    LIMIT_FALLBACK,
    LIMIT_NOTE,
    Step,
    ToolCallFinished,
    ToolCallRecord,
    ToolCallStarted,
    TurnResult,
    replay,
    run_turn,
)
from app.agent.providers import Message, ProviderError, TextDelta
from app.agent.runner import MEMORY_HEADER, Conversation, instructions, memory_notes, prompt
from app.agent.tools import Tool, ToolContext
from app.core.settings import Settings
from tests.agent.scripted import ScriptedProvider, reply

COUNTER_SCHEMA = {"type": "object", "properties": {"step": {"type": "integer"}}, "additionalProperties": False}


@pytest.fixture
def context(tmp_path):
    return ToolContext(session_id="sess_loop", user_id=None, settings=Settings(tmp_path / "none.toml"))


@pytest.fixture
def calls():
    return []


@pytest.fixture
def tools(calls):
    def count(arguments, context):
        calls.append(arguments)
        return f"counted {len(calls)}"

    def explode(arguments, context):
        raise RuntimeError("boom")

    return [Tool("count", "Counts calls", COUNTER_SCHEMA, count), Tool("explode", "Fails", {"type": "object"}, explode)]


def build_messages(system_prompt, memories, history, user_content):
    """The prompt a session builds: its instructions, then recalled memories."""
    return prompt(Conversation(user_content, history), [instructions(system_prompt), memory_notes(memories)])


def run(provider, tools, context, max_tool_calls=10, stream=False, prompt=None):
    events = list(run_turn(provider, prompt or [Message("user", "go")], tools, context, max_tool_calls, stream))
    assert isinstance(events[-1], TurnResult)
    assert not any(isinstance(event, TurnResult) for event in events[:-1])
    return events[:-1], events[-1]


def test_a_plain_answer(tools, context):
    provider = ScriptedProvider(reply("Hello there", usage=(7, 2)))
    events, result = run(provider, tools, context)
    assert events == []
    assert (result.content, result.steps, result.stop_reason) == ("Hello there", [], "end_turn")
    assert (result.usage.input, result.usage.output) == (7, 2)
    messages, specs = provider.requests[0]
    assert messages == [Message("user", "go")]
    assert [spec.name for spec in specs] == ["count", "explode"]


def test_tool_calls_run_and_their_results_go_back_to_the_model(tools, context, calls):
    provider = ScriptedProvider(reply("Let me count.", calls=[("count", {"step": 1})]), reply("Counted once."))
    events, result = run(provider, tools, context)
    assert [type(event) for event in events] == [ToolCallStarted, ToolCallFinished]
    assert events[1].record == ToolCallRecord("call_count_0", "count", {"step": 1}, "counted 1", False)
    assert calls == [{"step": 1}]
    assert result.content == "Counted once."
    assert result.steps == [Step("Let me count.", [events[1].record])]
    assert (result.usage.input, result.usage.output) == (20, 10)
    second_request = provider.requests[1][0]
    assert second_request[1:] == [
        Message("assistant", "Let me count.", tool_calls=[events[0].call]),
        Message("tool", "counted 1", tool_call_id="call_count_0", name="count"),
    ]


def test_a_failing_tool_never_breaks_the_turn(tools, context):
    provider = ScriptedProvider(reply(calls=[("explode", {}), ("nonexistent", {}), ("count", {"step": "x"})]),
                                reply("Sorry, the tools failed."))
    events, result = run(provider, tools, context)
    records = [event.record for event in events if isinstance(event, ToolCallFinished)]
    assert [record.is_error for record in records] == [True, True, True]
    assert records[0].result == "Error: explode failed: RuntimeError: boom"
    assert "no tool named 'nonexistent'" in records[1].result
    assert "invalid arguments for count" in records[2].result
    assert result.content == "Sorry, the tools failed."
    tool_messages = [m for m in provider.requests[1][0] if m.role == "tool"]
    assert [m.content for m in tool_messages] == [r.result for r in records]


def test_calls_past_the_limit_in_one_reply_are_answered_but_not_run(tools, context, calls):
    provider = ScriptedProvider(reply(calls=[("count", {"step": n}) for n in (1, 2, 3)]), reply("Done."))
    events, result = run(provider, tools, context, max_tool_calls=2)
    assert calls == [{"step": 1}, {"step": 2}]
    records = [event.record for event in events if isinstance(event, ToolCallFinished)]
    assert records[2].is_error and records[2].result.startswith("Not run:")
    # Every call got a result, and the model was told to answer.
    last_request = provider.requests[1][0]
    assert [m.tool_call_id for m in last_request if m.role == "tool"] == [r.id for r in records]
    assert last_request[-1] == Message("system", LIMIT_NOTE.format(n=2))
    assert result.content == "Done."


def test_a_model_that_keeps_calling_tools_is_stopped_at_the_limit(tools, context, calls):
    provider = ScriptedProvider(*[reply(calls=[("count", {"step": n})]) for n in range(1, 5)])
    events, result = run(provider, tools, context, max_tool_calls=2)
    assert len(calls) == 2
    assert len(provider.requests) == 3
    assert provider.requests[0][0][-1].role == "user"
    assert provider.requests[2][0][-1] == Message("system", LIMIT_NOTE.format(n=2))
    assert result.content == LIMIT_FALLBACK.format(n=2)
    assert result.stop_reason == "tool_limit"
    assert len(result.tool_calls) == 2


def test_no_tools_are_offered_when_none_may_run(tools, context):
    provider = ScriptedProvider(reply("No tools today."))
    run(provider, tools, context, max_tool_calls=0)
    assert provider.requests[0][1] == []


def test_streaming_yields_the_text_as_it_comes(tools, context):
    provider = ScriptedProvider(reply("first round", calls=[("count", {})]), reply("the final answer"))
    events, result = run(provider, tools, context, stream=True)
    kinds = [type(event).__name__ for event in events]
    assert kinds == ["TextDelta", "TextDelta", "ToolCallStarted", "ToolCallFinished", "TextDelta", "TextDelta",
                     "TextDelta"]
    assert "".join(e.text for e in events[4:] if isinstance(e, TextDelta)) == result.content == "the final answer"


def test_a_provider_failure_ends_the_turn(tools, context):
    provider = ScriptedProvider(reply(calls=[("count", {})]), ProviderError("upstream returned HTTP 503", status=503))
    with pytest.raises(ProviderError, match="HTTP 503"):
        run(provider, tools, context)


def test_prompt_and_replay():
    step = Step("checking", [ToolCallRecord("c1", "count", {"step": 1}, "counted 1")])
    assert Step.from_dict(step.as_dict()) == step
    history = [Message("user", "before"), *replay("answer", [step])]
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    prompt = build_messages("Be brief.", ["User: cats\n  Assistant: meow"], history, "now")
    assert prompt[0] == Message("system", f"Be brief.\n\n{MEMORY_HEADER}\n- User: cats Assistant: meow")
    assert prompt[1:] == [*history, Message("user", "now")]
    assert build_messages("", [], [], "hi") == [Message("user", "hi")]
