import pytest

from app.agent.providers import Completion, Message, ProviderError, TextDelta, ToolCall, ToolSpec, Usage
from tests.agent.providers.fake_llm import sse

SEARCH = ToolSpec(
    name="search",
    description="Search the files",
    parameters={"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)


def test_complete_with_text(fake_llm, make_provider):
    fake_llm.queue_reply(text="Hello there", input_tokens=12, output_tokens=3)
    provider = make_provider("anthropic", max_tokens=321)

    completion = provider.complete([Message("system", "Be brief"), Message("user", "Hi")], [])

    assert completion == Completion("Hello there", [], Usage(input=12, output=3), "end_turn")
    request = fake_llm.requests[-1]
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == "sk-test-secret-key"
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert request.json == {
        "model": "anthropic-test-model",
        "max_tokens": 321,
        "system": "Be brief",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
    }


def test_complete_with_a_tool_call(fake_llm, make_provider):
    fake_llm.queue_reply(
        text="Searching.", tool_calls=[{"id": "toolu_1", "name": "search", "arguments": {"query": "todo"}}]
    )

    completion = make_provider("anthropic").complete([Message("user", "find todos")], [SEARCH])

    assert completion.content == "Searching."
    assert completion.stop_reason == "tool_use"
    assert completion.tool_calls == [ToolCall(id="toolu_1", name="search", arguments={"query": "todo"})]
    body = fake_llm.requests[-1].json
    assert body["tools"] == [
        {"name": "search", "description": SEARCH.description, "input_schema": SEARCH.parameters}
    ]
    assert "system" not in body


def test_stop_reasons_are_passed_through(fake_llm, make_provider):
    fake_llm.queue_reply(text="cut", stop_reason="max_tokens")
    fake_llm.queue_reply(text="halt", stop_reason="stop_sequence")
    provider = make_provider("anthropic")
    assert provider.complete([Message("user", "Hi")], []).stop_reason == "max_tokens"
    assert provider.complete([Message("user", "Hi")], []).stop_reason == "stop_sequence"


def test_multi_turn_conversation_with_tool_results_is_mapped(fake_llm, make_provider):
    messages = [
        Message("system", "Be brief"),
        Message("system", "Use tools"),
        Message("user", "Compare a and b"),
        Message(
            "assistant",
            "Looking.",
            tool_calls=[
                ToolCall("toolu_1", "search", {"query": "a"}),
                ToolCall("toolu_2", "search", {"query": "b"}),
            ],
        ),
        Message("tool", "found a", tool_call_id="toolu_1", name="search"),
        Message("tool", "found b", tool_call_id="toolu_2", name="search"),
        Message("assistant", tool_calls=[ToolCall("toolu_3", "search", {})]),
        Message("tool", "nothing", tool_call_id="toolu_3", name="search"),
        Message("assistant", "a and b both exist"),
        Message("user", "Thanks"),
    ]

    make_provider("anthropic").complete(messages, [SEARCH])

    body = fake_llm.requests[-1].json
    assert body["system"] == "Be brief\n\nUse tools"
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Compare a and b"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "toolu_1", "name": "search", "input": {"query": "a"}},
                {"type": "tool_use", "id": "toolu_2", "name": "search", "input": {"query": "b"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "found a"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "found b"},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_3", "name": "search", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_3", "content": "nothing"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "a and b both exist"}]},
        {"role": "user", "content": [{"type": "text", "text": "Thanks"}]},
    ]


def test_stream_text(fake_llm, make_provider):
    fake_llm.queue_reply(text="Hello streaming world", input_tokens=21, output_tokens=4)

    items = list(make_provider("anthropic").stream([Message("user", "Hi")], []))

    assert items[:-1] == [TextDelta("Hello "), TextDelta("streaming "), TextDelta("world")]
    # input_tokens arrive in message_start, output_tokens in message_delta.
    assert items[-1] == Completion("Hello streaming world", [], Usage(input=21, output=4), "end_turn")
    assert fake_llm.requests[-1].json["stream"] is True


def test_stream_tool_calls_split_across_chunks(fake_llm, make_provider):
    fake_llm.queue_reply(
        text="Let me check.",
        tool_calls=[
            {"id": "toolu_a", "name": "search", "arguments": {"query": "alpha beta gamma"}},
            {"id": "toolu_b", "name": "search", "arguments": {"query": "delta", "limit": 3}},
        ],
        input_tokens=30,
        output_tokens=18,
    )

    items = list(make_provider("anthropic").stream([Message("user", "look")], [SEARCH]))

    final = items[-1]
    assert "".join(item.text for item in items[:-1]) == "Let me check."
    assert final.content == "Let me check."
    assert final.tool_calls == [
        ToolCall("toolu_a", "search", {"query": "alpha beta gamma"}),
        ToolCall("toolu_b", "search", {"query": "delta", "limit": 3}),
    ]
    assert final.stop_reason == "tool_use"
    assert final.usage == Usage(input=30, output=18)


def test_stream_error_event_raises(fake_llm, make_provider):
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}}
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    fake_llm.queue_stream(
        [
            sse(start, "message_start"),
            sse(block, "content_block_start"),
            sse(delta, "content_block_delta"),
            sse(error, "error"),
        ]
    )
    stream = make_provider("anthropic").stream([Message("user", "Hi")], [])

    assert next(stream) == TextDelta("Hel")
    with pytest.raises(ProviderError, match="Overloaded"):
        next(stream)


def test_stream_that_ends_without_a_stop_reason_raises(fake_llm, make_provider):
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}}
    fake_llm.queue_stream([sse(start, "message_start")])
    with pytest.raises(ProviderError, match="ended before the reply was complete"):
        list(make_provider("anthropic").stream([Message("user", "Hi")], []))
