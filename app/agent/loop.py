"""One agent turn: the conversation goes to the model, tool calls run, the answer comes back.

The loop knows nothing of sessions or storage. It takes the prompt (built by
``app.agent.runner``), the tools on offer and a provider, and yields events as
the turn goes: ``TextDelta`` pieces (when streaming), ``ToolCallStarted`` and
``ToolCallFinished`` for every call, and a ``TurnResult`` last. A provider
failure surfaces as ``ProviderError`` from the iteration; a tool failure
never does: its error text becomes the tool's result for the model to read.
A run given a ``deadline`` (a ``time.monotonic()`` value) stops with
``DeadlineExceeded`` at the first step boundary past it: before asking the
model, once its answer arrives, and before each tool call.

At most ``max_tool_calls`` tools run per turn. Once they are used up the model
is asked for its answer; calls it makes past the limit are not run but still
answered ("Not run: ..."), because every call in a conversation needs a result
before the providers accept the next request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from app.agent.providers import Completion, Message, Provider, ProviderError, TextDelta, ToolCall, Usage
from app.agent.tools import Tool, ToolContext, ToolResult, execute

log = logging.getLogger("agent::loop")

LIMIT_NOTE = ("This turn has used all {n} tool calls it is allowed. Do not call any more tools: "
              "answer the user now with what you have.")
NOT_RUN = "Not run: this turn already used all {n} tool calls it is allowed."
LIMIT_FALLBACK = "I could not finish this answer: the turn used all {n} tool calls it is allowed."


@dataclass
class ToolCallRecord:
    """A call the model made and what it got back, as the messages API shows it."""

    id: str
    name: str
    arguments: dict
    result: str
    is_error: bool = False

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ToolCallRecord:
        return cls(id=data["id"], name=data["name"], arguments=data.get("arguments") or {},
                   result=data.get("result", ""), is_error=bool(data.get("is_error")))


@dataclass
class Step:
    """One tool round: the model's text and calls, and the results it was given."""

    content: str
    calls: list[ToolCallRecord] = field(default_factory=list)

    def messages(self) -> list[Message]:
        asked = Message("assistant", self.content,
                        tool_calls=[ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in self.calls])
        answers = [Message("tool", c.result, tool_call_id=c.id, name=c.name) for c in self.calls]
        return [asked, *answers]

    def as_dict(self) -> dict:
        return {"content": self.content, "calls": [call.as_dict() for call in self.calls]}

    @classmethod
    def from_dict(cls, data: dict) -> Step:
        return cls(content=data.get("content", ""), calls=[ToolCallRecord.from_dict(c) for c in data.get("calls", [])])


@dataclass
class ToolCallStarted:
    call: ToolCall


@dataclass
class ToolCallFinished:
    record: ToolCallRecord


@dataclass
class TurnResult:
    content: str
    steps: list[Step]
    usage: Usage
    stop_reason: str

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        return [call for step in self.steps for call in step.calls]


TurnEvent = TextDelta | ToolCallStarted | ToolCallFinished | TurnResult


class DeadlineExceeded(Exception):
    """The run reached its deadline before it finished."""


def check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded("the run reached its deadline")


def replay(content: str, steps: list[Step]) -> list[Message]:
    """An earlier assistant reply as the provider saw it: tool rounds, then the answer."""
    messages = [message for step in steps for message in step.messages()]
    return [*messages, Message("assistant", content)]


def run_turn(
    provider: Provider,
    messages: list[Message],
    tools: list[Tool],
    context: ToolContext,
    max_tool_calls: int,
    stream: bool = False,
    deadline: float | None = None,
) -> Iterator[TurnEvent]:
    offered = {tool.name: tool for tool in tools} if max_tool_calls > 0 else {}
    specs = [tool.spec() for tool in offered.values()]
    conversation = list(messages)
    steps: list[Step] = []
    usage = Usage()
    calls_made = 0
    while True:
        limit_reached = calls_made >= max_tool_calls
        request = conversation
        if limit_reached and calls_made:
            request = [*conversation, Message("system", LIMIT_NOTE.format(n=max_tool_calls))]
        check_deadline(deadline)
        completion = yield from _ask(provider, request, specs, stream)
        check_deadline(deadline)
        usage = Usage(input=usage.input + completion.usage.input, output=usage.output + completion.usage.output)
        if not completion.tool_calls or limit_reached:
            yield _finish(completion, steps, usage, limit_reached, max_tool_calls)
            return
        step = yield from _run_tools(completion, offered, context, max_tool_calls - calls_made, max_tool_calls,
                                     deadline)
        calls_made += min(len(completion.tool_calls), max_tool_calls - calls_made)
        steps.append(step)
        conversation.extend(step.messages())


def _ask(provider: Provider, messages: list[Message], specs, stream: bool):
    if not stream:
        return provider.complete(messages, specs)
    completion = None
    for item in provider.stream(messages, specs):
        if isinstance(item, TextDelta):
            if item.text:
                yield item
        elif isinstance(item, Completion):
            completion = item
    if completion is None:
        raise ProviderError(f"{provider.name}: the reply stream ended without a complete reply")
    return completion


def _run_tools(completion: Completion, offered: dict, context: ToolContext, allowed: int, limit: int,
               deadline: float | None = None):
    records = []
    for index, call in enumerate(completion.tool_calls):
        check_deadline(deadline)
        yield ToolCallStarted(call)
        if index < allowed:
            result = execute(offered.get(call.name), call, context)
        else:
            result = ToolResult(NOT_RUN.format(n=limit), is_error=True)
        record = ToolCallRecord(id=call.id, name=call.name, arguments=call.arguments,
                                result=result.content, is_error=result.is_error)
        records.append(record)
        yield ToolCallFinished(record)
    return Step(content=completion.content, calls=records)


def _finish(completion: Completion, steps: list[Step], usage: Usage, limit_reached: bool, limit: int) -> TurnResult:
    content = completion.content
    if completion.tool_calls:
        # Calls past the limit are dropped: nothing ran, and the answer is what text there is.
        log.info("model asked for %d more tool calls after the limit of %d", len(completion.tool_calls), limit)
        content = content or LIMIT_FALLBACK.format(n=limit)
    stop_reason = "tool_limit" if completion.tool_calls and limit_reached else completion.stop_reason
    return TurnResult(content=content, steps=steps, usage=usage, stop_reason=stop_reason)
