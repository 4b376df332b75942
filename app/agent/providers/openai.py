"""Provider for OpenAI-compatible chat-completions APIs.

Works with api.openai.com and with local servers that copy its wire format,
such as Ollama (base_url ``http://localhost:11434/v1``).
"""

import json
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field

from .base import (
    Completion,
    Message,
    Provider,
    ProviderError,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
    parse_tool_arguments,
)
from .http import HttpClient

DEFAULT_BASE_URL = "https://api.openai.com/v1"

STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


class OpenAIProvider(Provider):
    name = "openai"

    def __init__(self, settings):
        super().__init__(settings)
        self.http = HttpClient(self.name, settings)
        self.url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/") + "/chat/completions"

    def complete(self, messages: list[Message], tools: list[ToolSpec]) -> Completion:
        body = self.http.post_json(self.url, self._payload(messages, tools), self._headers())
        choices = body.get("choices") or []
        if not choices:
            raise ProviderError(f"{self.name}: the reply had no choices")
        choice = choices[0]
        message = choice.get("message") or {}
        wire_calls = message.get("tool_calls") or []
        tool_calls = [_tool_call_from_wire(index, call) for index, call in enumerate(wire_calls)]
        return Completion(
            content=message.get("content") or "",
            tool_calls=tool_calls,
            usage=_usage_from_wire(body.get("usage")),
            stop_reason=_stop_reason(choice.get("finish_reason"), tool_calls),
        )

    def stream(self, messages: list[Message], tools: list[ToolSpec]) -> Iterator[TextDelta | Completion]:
        payload = self._payload(messages, tools)
        payload["stream"] = True
        # Without this the API sends no token counts when streaming.
        payload["stream_options"] = {"include_usage": True}
        reply = _StreamedReply()
        with closing(self.http.post_stream(self.url, payload, self._headers())) as events:
            for event in events:
                if event.data.strip() == "[DONE]":
                    break
                chunk = self.http.decode_event_data(event)
                self._raise_for_stream_error(chunk)
                text = reply.add_chunk(chunk)
                if text:
                    yield TextDelta(text)
        if reply.finish_reason is None:
            raise ProviderError(f"{self.name}: the reply stream ended before the reply was complete")
        yield reply.completion()

    def _payload(self, messages: list[Message], tools: list[ToolSpec]) -> dict:
        payload = {
            "model": self.settings.model,
            "messages": [_message_to_wire(message) for message in messages],
            "max_tokens": self.settings.max_tokens,
        }
        if tools:
            payload["tools"] = [_tool_to_wire(tool) for tool in tools]
        return payload

    def _raise_for_stream_error(self, chunk: dict) -> None:
        # Compatible servers report failures after the stream has started as a
        # chunk carrying an "error" member.
        error = chunk.get("error")
        if error:
            raise self.http.reported_error(error.get("message") if isinstance(error, dict) else error)

    def _headers(self) -> dict:
        # Local servers such as Ollama need no key, so the header is optional.
        return {"Authorization": f"Bearer {self.settings.api_key}"} if self.settings.api_key else {}


def _message_to_wire(message: Message) -> dict:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            # The API wants null rather than "" when the turn is only tool calls.
            "content": message.content or None,
            "tool_calls": [_tool_call_to_wire(call) for call in message.tool_calls],
        }
    return {"role": message.role, "content": message.content}


def _tool_call_to_wire(call: ToolCall) -> dict:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
    }


def _tool_to_wire(tool: ToolSpec) -> dict:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


def _tool_call_from_wire(index: int, call: dict) -> ToolCall:
    function = call.get("function") or {}
    return ToolCall(
        # Some compatible servers omit ids; the loop still needs one to pair results.
        id=call.get("id") or f"call_{index}",
        name=function.get("name") or "",
        arguments=_decode_arguments(function.get("arguments")),
    )


def _decode_arguments(value) -> dict:
    # The format says a JSON string, but a few compatible servers send the
    # object itself.
    if isinstance(value, dict):
        return value
    return parse_tool_arguments(value if isinstance(value, str) else "")


def _usage_from_wire(usage: dict | None) -> Usage:
    usage = usage or {}
    return Usage(input=usage.get("prompt_tokens") or 0, output=usage.get("completion_tokens") or 0)


def _stop_reason(finish_reason: str | None, tool_calls: list[ToolCall]) -> str:
    reason = STOP_REASONS.get(finish_reason, finish_reason or "end_turn")
    # Some compatible servers (older Ollama releases) report "stop" even when
    # the turn asks for tools; the tool calls are what the loop must act on.
    if tool_calls and reason == "end_turn":
        return "tool_use"
    return reason


@dataclass
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: str = ""

    def tool_call(self, index: int) -> ToolCall:
        return ToolCall(
            id=self.id or f"call_{index}", name=self.name, arguments=parse_tool_arguments(self.arguments)
        )


@dataclass
class _StreamedReply:
    """Accumulates streamed chunks into one Completion."""

    text: list[str] = field(default_factory=list)
    tool_calls: dict[int, _ToolCallParts] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None

    def add_chunk(self, chunk: dict) -> str:
        """Record one chunk; return the new text it carries ("" if none)."""
        if chunk.get("usage"):
            # With include_usage the counts arrive in a final chunk with no choices.
            self.usage = _usage_from_wire(chunk["usage"])
        choices = chunk.get("choices") or []
        if not choices:
            return ""
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta") or {}
        for position, fragment in enumerate(delta.get("tool_calls") or []):
            self._add_tool_call_fragment(fragment.get("index", position), fragment)
        text = delta.get("content") or ""
        if text:
            self.text.append(text)
        return text

    def _add_tool_call_fragment(self, index: int, fragment: dict) -> None:
        # The id and name come in the first fragment for a call; the arguments
        # follow as pieces of a JSON string that only parse once joined.
        parts = self.tool_calls.setdefault(index, _ToolCallParts())
        function = fragment.get("function") or {}
        parts.id = fragment.get("id") or parts.id
        parts.name = function.get("name") or parts.name
        parts.arguments += function.get("arguments") or ""

    def completion(self) -> Completion:
        tool_calls = [parts.tool_call(index) for index, parts in sorted(self.tool_calls.items())]
        return Completion(
            content="".join(self.text),
            tool_calls=tool_calls,
            usage=self.usage,
            stop_reason=_stop_reason(self.finish_reason, tool_calls),
        )
