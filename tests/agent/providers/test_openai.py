import pytest

from app.agent.providers import Completion, Message, ProviderError, TextDelta, ToolCall, ToolSpec, Usage
from tests.agent.providers.fake_llm import sse

SEARCH = ToolSpec(
    name="search",
    description="Search the files",
    parameters={"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)


def split_stream(items):
    return [item.text for item in items[:-1]], items[-1]


def test_complete_with_text(fake_llm, make_provider):
    fake_llm.queue_reply(text="Hello there", input_tokens=12, output_tokens=3)
    provider = make_provider("openai")

    completion = provider.complete([Message("user", "Hi")], [])

    assert completion == Completion("Hello there", [], Usage(input=12, output=3), "end_turn")
    request = fake_llm.requests[-1]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test-secret-key"
    assert request.json == {
        "model": "openai-test-model",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 256,
    }


def test_no_authorization_header_without_a_key(fake_llm, make_provider):
    make_provider("openai", api_key="").complete([Message("user", "Hi")], [])
    assert "authorization" not in fake_llm.requests[-1].headers


def test_complete_with_a_tool_call(fake_llm, make_provider):
    fake_llm.queue_reply(tool_calls=[{"id": "call_abc", "name": "search", "arguments": {"query": "todo"}}])

    completion = make_provider("openai").complete([Message("user", "find todos")], [SEARCH])

    assert completion.content == ""
    assert completion.stop_reason == "tool_use"
    assert completion.tool_calls == [ToolCall(id="call_abc", name="search", arguments={"query": "todo"})]
    assert fake_llm.requests[-1].json["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "search",
                "description": SEARCH.description,
                "parameters": SEARCH.parameters,
            },
        }
    ]


def test_length_finish_reason_maps_to_max_tokens(fake_llm, make_provider):
    fake_llm.queue_reply(text="cut", stop_reason="max_tokens")
    assert make_provider("openai").complete([Message("user", "Hi")], []).stop_reason == "max_tokens"


def test_invalid_tool_arguments_are_kept_raw(fake_llm, make_provider):
    fake_llm.queue_reply(tool_calls=[{"name": "search", "arguments": '{"query": "tod'}])
    call = make_provider("openai").complete([Message("user", "find")], [SEARCH]).tool_calls[0]
    assert call.arguments == {"_raw": '{"query": "tod'}


def test_multi_turn_conversation_with_tool_results_is_mapped(fake_llm, make_provider):
    messages = [
        Message("system", "Be brief"),
        Message("user", "Compare a and b"),
        Message(
            "assistant",
            "Looking.",
            tool_calls=[
                ToolCall("call_1", "search", {"query": "a"}),
                ToolCall("call_2", "search", {"query": "b"}),
            ],
        ),
        Message("tool", "found a", tool_call_id="call_1", name="search"),
        Message("tool", "found b", tool_call_id="call_2", name="search"),
        Message("assistant", tool_calls=[ToolCall("call_3", "search", {})]),
        Message("tool", "nothing", tool_call_id="call_3", name="search"),
        Message("assistant", "a and b both exist"),
        Message("user", "Thanks"),
    ]

    make_provider("openai").complete(messages, [SEARCH])

    def call(call_id, arguments):
        return {"id": call_id, "type": "function", "function": {"name": "search", "arguments": arguments}}

    assert fake_llm.requests[-1].json["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Compare a and b"},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [call("call_1", '{"query": "a"}'), call("call_2", '{"query": "b"}')],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "found a"},
        {"role": "tool", "tool_call_id": "call_2", "content": "found b"},
        {"role": "assistant", "content": None, "tool_calls": [call("call_3", "{}")]},
        {"role": "tool", "tool_call_id": "call_3", "content": "nothing"},
        {"role": "assistant", "content": "a and b both exist"},
        {"role": "user", "content": "Thanks"},
    ]


def test_stream_text(fake_llm, make_provider):
    fake_llm.queue_reply(text="Hello streaming world", input_tokens=21, output_tokens=4)

    items = list(make_provider("openai").stream([Message("user", "Hi")], []))

    texts, final = split_stream(items)
    assert all(isinstance(item, TextDelta) for item in items[:-1])
    assert texts == ["Hello ", "streaming ", "world"]
    assert final == Completion("Hello streaming world", [], Usage(input=21, output=4), "end_turn")
    body = fake_llm.requests[-1].json
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


def test_stream_tool_calls_split_across_chunks(fake_llm, make_provider):
    fake_llm.queue_reply(
        text="Let me check.",
        tool_calls=[
            {"id": "call_a", "name": "search", "arguments": {"query": "alpha beta gamma"}},
            {"id": "call_b", "name": "search", "arguments": {"query": "delta", "limit": 3}},
        ],
        input_tokens=30,
        output_tokens=18,
    )

    items = list(make_provider("openai").stream([Message("user", "look")], [SEARCH]))

    texts, final = split_stream(items)
    assert "".join(texts) == "Let me check."
    assert final.content == "Let me check."
    assert final.tool_calls == [
        ToolCall("call_a", "search", {"query": "alpha beta gamma"}),
        ToolCall("call_b", "search", {"query": "delta", "limit": 3}),
    ]
    assert final.stop_reason == "tool_use"
    assert final.usage == Usage(input=30, output=18)


def test_stream_invalid_tool_arguments_are_kept_raw(fake_llm, make_provider):
    fake_llm.queue_reply(tool_calls=[{"name": "search", "arguments": '{"query": oops}'}])
    final = list(make_provider("openai").stream([Message("user", "look")], [SEARCH]))[-1]
    assert final.tool_calls[0].arguments == {"_raw": '{"query": oops}'}


def test_stream_error_chunk_raises(fake_llm, make_provider):
    fake_llm.queue_stream(
        [
            sse({"choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}]}),
            sse({"error": {"message": "model crashed"}}),
        ]
    )
    stream = make_provider("openai").stream([Message("user", "Hi")], [])
    assert next(stream) == TextDelta("Hel")
    with pytest.raises(ProviderError, match="model crashed"):
        next(stream)


def test_stream_that_ends_without_a_finish_reason_raises(fake_llm, make_provider):
    fake_llm.queue_stream([sse({"choices": [{"index": 0, "delta": {"content": "Hel"}}]})])
    with pytest.raises(ProviderError, match="ended before the reply was complete"):
        list(make_provider("openai").stream([Message("user", "Hi")], []))
