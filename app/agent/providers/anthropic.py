"""Provider for the Anthropic Messages API."""

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

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


class AnthropicProvider(Provider):
    name = "anthropic"

    def __init__(self, settings):
        super().__init__(settings)
        self.http = HttpClient(self.name, settings)
        self.url = (settings.base_url or DEFAULT_BASE_URL).rstrip("/") + "/v1/messages"

    def complete(self, messages: list[Message], tools: list[ToolSpec]) -> Completion:
        body = self.http.post_json(self.url, self._payload(messages, tools), self._headers())
        return _completion_from_wire(body)

    def stream(self, messages: list[Message], tools: list[ToolSpec]) -> Iterator[TextDelta | Completion]:
        payload = self._payload(messages, tools)
        payload["stream"] = True
        reply = _StreamedReply()
        with closing(self.http.post_stream(self.url, payload, self._headers())) as events:
            for event in events:
                data = self.http.decode_event_data(event)
                if data.get("type") == "error":
                    raise self.http.reported_error((data.get("error") or {}).get("message"))
                text = reply.add_event(data)
                if text:
                    yield TextDelta(text)
                if data.get("type") == "message_stop":
                    break
        if reply.stop_reason is None:
            raise ProviderError(f"{self.name}: the reply stream ended before the reply was complete")
        yield reply.completion()

    def _payload(self, messages: list[Message], tools: list[ToolSpec]) -> dict:
        payload = {
            "model": self.settings.model,
            "max_tokens": self.settings.max_tokens,
            "messages": _conversation_to_wire(messages),
        }
        # The API takes the system prompt as a top-level field, not as a turn.
        system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
        if system:
            payload["system"] = system
        if tools:
            payload["tools"] = [_tool_to_wire(tool) for tool in tools]
        return payload

    def _headers(self) -> dict:
        headers = {"anthropic-version": API_VERSION, "content-type": "application/json"}
        if self.settings.api_key:
            headers["x-api-key"] = self.settings.api_key
        return headers


def _conversation_to_wire(messages: list[Message]) -> list[dict]:
    """Turn messages into API turns.

    Tool results travel inside a user turn, and a run of them (one per call the
    assistant made) must share one turn, so adjacent turns with the same role
    are merged.
    """
    turns: list[dict] = []
    for message in messages:
        if message.role == "system":
            continue
        role, blocks = _turn_from_message(message)
        if not blocks:
            continue  # the API rejects empty content
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _turn_from_message(message: Message) -> tuple[str, list[dict]]:
    if message.role == "tool":
        result = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.content}
        return "user", [result]
    blocks = [{"type": "text", "text": message.content}] if message.content else []
    if message.role == "assistant":
        blocks += [_tool_use_block(call) for call in message.tool_calls]
        return "assistant", blocks
    return "user", blocks


def _tool_use_block(call: ToolCall) -> dict:
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}


def _tool_to_wire(tool: ToolSpec) -> dict:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}


def _completion_from_wire(body: dict) -> Completion:
    text, tool_calls = [], []
    for block in body.get("content") or []:
        if block.get("type") == "text":
            text.append(block.get("text") or "")
        elif block.get("type") == "tool_use":
            tool_calls.append(_tool_call_from_block(block))
    return Completion(
        content="".join(text),
        tool_calls=tool_calls,
        usage=_usage_from_wire(body.get("usage")),
        stop_reason=body.get("stop_reason") or "end_turn",
    )


def _tool_call_from_block(block: dict) -> ToolCall:
    arguments = block.get("input")
    return ToolCall(
        id=block.get("id") or "",
        name=block.get("name") or "",
        arguments=arguments if isinstance(arguments, dict) else {},
    )


def _usage_from_wire(usage: dict | None) -> Usage:
    usage = usage or {}
    # Prompt-cache reads and writes are reported apart from input_tokens but
    # are still input the model processed.
    input_tokens = sum(
        usage.get(key) or 0
        for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return Usage(input=input_tokens, output=usage.get("output_tokens") or 0)


@dataclass
class _Block:
    type: str
    text: str = ""
    id: str = ""
    name: str = ""
    partial_json: str = ""
    start_input: dict = field(default_factory=dict)

    def tool_call(self) -> ToolCall:
        # Arguments normally arrive as input_json_delta pieces; the input given
        # at block start only counts when no pieces followed.
        arguments = parse_tool_arguments(self.partial_json) if self.partial_json else self.start_input
        return ToolCall(id=self.id, name=self.name, arguments=arguments)


@dataclass
class _StreamedReply:
    """Accumulates stream events into one Completion."""

    blocks: dict[int, _Block] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    stop_reason: str | None = None

    def add_event(self, data: dict) -> str:
        """Record one event; return the new text it carries ("" if none)."""
        kind = data.get("type")
        if kind == "message_start":
            self.usage = _usage_from_wire((data.get("message") or {}).get("usage"))
        elif kind == "content_block_start":
            self._start_block(data.get("index", len(self.blocks)), data.get("content_block") or {})
        elif kind == "content_block_delta":
            return self._add_delta(data.get("index", 0), data.get("delta") or {})
        elif kind == "message_delta":
            self._finish(data)
        return ""

    def _start_block(self, index: int, block: dict) -> None:
        start_input = block.get("input")
        self.blocks[index] = _Block(
            type=block.get("type") or "",
            text=block.get("text") or "",
            id=block.get("id") or "",
            name=block.get("name") or "",
            start_input=start_input if isinstance(start_input, dict) else {},
        )

    def _add_delta(self, index: int, delta: dict) -> str:
        block = self.blocks.setdefault(index, _Block(type="text"))
        if delta.get("type") == "text_delta":
            text = delta.get("text") or ""
            block.text += text
            return text
        if delta.get("type") == "input_json_delta":
            block.partial_json += delta.get("partial_json") or ""
        return ""

    def _finish(self, data: dict) -> None:
        self.stop_reason = (data.get("delta") or {}).get("stop_reason") or "end_turn"
        usage = data.get("usage") or {}
        # Counts in message_delta are running totals, so they replace earlier ones.
        if usage.get("output_tokens") is not None:
            self.usage.output = usage["output_tokens"]
        if usage.get("input_tokens") is not None:
            self.usage.input = _usage_from_wire(usage).input

    def completion(self) -> Completion:
        ordered = [block for _, block in sorted(self.blocks.items())]
        return Completion(
            content="".join(block.text for block in ordered if block.type == "text"),
            tool_calls=[block.tool_call() for block in ordered if block.type == "tool_use"],
            usage=self.usage,
            stop_reason=self.stop_reason,
        )
