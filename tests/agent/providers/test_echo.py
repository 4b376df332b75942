import pytest

from app.agent.providers import (
    Completion,
    Message,
    ProviderError,
    ProviderSettings,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
    create_provider,
)

CLOCK = ToolSpec(name="clock", description="Current time", parameters={"type": "object", "properties": {}})


@pytest.fixture
def echo():
    return create_provider(ProviderSettings())


def test_replies_to_the_last_user_message(echo):
    messages = [
        Message("system", "You are terse"),
        Message("user", "first question"),
        Message("assistant", "echo: first question"),
        Message("user", "hello big world"),
    ]
    completion = echo.complete(messages, [])
    assert completion.content == "echo: hello big world"
    assert completion.tool_calls == []
    assert completion.stop_reason == "end_turn"


def test_counts_words_as_tokens(echo):
    messages = [Message("system", "You are terse"), Message("user", "hello  big\nworld")]
    usage = echo.complete(messages, []).usage
    assert usage.input == 6  # 3 system words + 3 user words
    assert usage.output == 4  # "echo:" + 3 words


def test_is_deterministic(echo):
    messages = [Message("user", "same input")]
    assert echo.complete(messages, []) == echo.complete(messages, [])


def test_tool_command_produces_a_tool_call(echo):
    completion = echo.complete([Message("user", '/tool clock {"tz": "UTC"}')], [CLOCK])
    assert completion.content == ""
    assert completion.stop_reason == "tool_use"
    assert completion.tool_calls == [ToolCall(id="call_1", name="clock", arguments={"tz": "UTC"})]
    assert completion.usage.output == 0


def test_tool_arguments_default_to_an_empty_object(echo):
    completion = echo.complete([Message("user", "/tool clock")], [CLOCK])
    assert completion.tool_calls[0].arguments == {}


def test_tool_arguments_that_are_not_json_are_kept_raw(echo):
    completion = echo.complete([Message("user", "/tool clock {oops")], [CLOCK])
    assert completion.tool_calls[0].arguments == {"_raw": "{oops"}


def test_tool_call_ids_count_earlier_calls(echo):
    earlier = [
        Message("user", "/tool clock"),
        Message("assistant", tool_calls=[ToolCall("call_1", "clock", {})]),
        Message("tool", "12:00", tool_call_id="call_1", name="clock"),
        Message("assistant", "Tool clock returned: 12:00"),
    ]
    completion = echo.complete(earlier + [Message("user", "/tool clock")], [CLOCK])
    assert completion.tool_calls[0].id == "call_2"


def test_unknown_tool_is_reported_in_text(echo):
    completion = echo.complete([Message("user", "/tool weather {}")], [CLOCK])
    assert completion.content == "echo: unknown tool weather"
    assert completion.tool_calls == []
    assert completion.stop_reason == "end_turn"


def test_answers_with_the_tool_result(echo):
    messages = [
        Message("user", "/tool clock"),
        Message("assistant", tool_calls=[ToolCall("call_1", "clock", {})]),
        Message("tool", "12:00 UTC", tool_call_id="call_1", name="clock"),
    ]
    completion = echo.complete(messages, [CLOCK])
    assert completion.content == "Tool clock returned: 12:00 UTC"
    assert completion.tool_calls == []
    assert completion.stop_reason == "end_turn"
    assert completion.usage == Usage(input=4, output=5)


def test_fail_command_raises(echo):
    with pytest.raises(ProviderError) as caught:
        echo.complete([Message("user", "  /fail ")], [])
    assert str(caught.value) == "echo provider asked to fail"


def test_stream_yields_words_then_the_completion(echo):
    messages = [Message("user", "stream  these words")]
    items = list(echo.stream(messages, []))
    deltas, final = items[:-1], items[-1]
    assert all(isinstance(item, TextDelta) for item in deltas)
    assert [delta.text for delta in deltas] == ["echo: ", "stream  ", "these ", "words"]
    assert isinstance(final, Completion)
    assert final == echo.complete(messages, [])
    assert "".join(delta.text for delta in deltas) == final.content


def test_stream_of_a_tool_call_has_no_text(echo):
    items = list(echo.stream([Message("user", "/tool clock")], [CLOCK]))
    assert len(items) == 1
    assert items[0].tool_calls[0].name == "clock"


def test_stream_fail_raises_while_iterating(echo):
    with pytest.raises(ProviderError):
        list(echo.stream([Message("user", "/fail")], []))
