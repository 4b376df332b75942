"""The built-in offline provider: deterministic replies for development and tests.

Behaviour, based on the last user message:

* Plain text: the reply is ``"echo: <content>"``.
* ``/fail``: raises ``ProviderError("echo provider asked to fail")``, so error
  paths can be exercised.
* ``/tool NAME {json object}``: asks for a tool call. The JSON is optional and
  defaults to ``{}``; text that is not a JSON object is passed on as
  ``{"_raw": "<text>"}``, the same way the HTTP providers treat broken model
  output.

  - If NAME is not among the offered tools, the reply is
    ``"echo: unknown tool NAME"``.
  - Otherwise the Completion has empty content, one ToolCall with id
    ``call_<n>`` (n counts the tool calls already in the conversation, from 1)
    and stop_reason ``"tool_use"``.
  - Once tool results follow that user message, the reply is
    ``"Tool NAME returned: <content of the last tool message>"`` with
    stop_reason ``"end_turn"``.

Token usage is counted in whitespace-separated words: input over the content
of every message (system included), output over the reply. Streaming yields
the reply word by word, then the Completion.
"""

import re
from collections.abc import Iterator

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

TOOL_COMMAND = "/tool"
FAIL_COMMAND = "/fail"


class EchoProvider(Provider):
    name = "echo"

    def complete(self, messages: list[Message], tools: list[ToolSpec]) -> Completion:
        request, later = _split_at_last_user(messages)
        command = request.strip()
        if command == FAIL_COMMAND:
            raise ProviderError("echo provider asked to fail")
        if _is_tool_command(command):
            completion = _answer_tool_command(command, later, messages, tools)
        else:
            completion = _text_reply(f"echo: {request}")
        completion.usage.input = sum(count_words(message.content) for message in messages)
        return completion

    def stream(self, messages: list[Message], tools: list[ToolSpec]) -> Iterator[TextDelta | Completion]:
        completion = self.complete(messages, tools)
        # Word-sized pieces that keep their trailing whitespace, so joining the
        # deltas gives back exactly the completion's content.
        for piece in re.findall(r"\S+\s*|\s+", completion.content):
            yield TextDelta(piece)
        yield completion


def _answer_tool_command(
    command: str, later: list[Message], messages: list[Message], tools: list[ToolSpec]
) -> Completion:
    tool_name, raw_arguments = _split_tool_command(command)
    results = [message for message in later if message.role == "tool"]
    if results:
        return _text_reply(f"Tool {tool_name} returned: {results[-1].content}")
    if tool_name not in {tool.name for tool in tools}:
        return _text_reply(f"echo: unknown tool {tool_name}")
    call_id = f"call_{_count_tool_calls(messages) + 1}"
    call = ToolCall(id=call_id, name=tool_name, arguments=parse_tool_arguments(raw_arguments))
    return Completion(content="", tool_calls=[call], usage=Usage(), stop_reason="tool_use")


def count_words(text: str) -> int:
    return len(text.split())


def _text_reply(text: str) -> Completion:
    usage = Usage(output=count_words(text))
    return Completion(content=text, tool_calls=[], usage=usage, stop_reason="end_turn")


def _split_at_last_user(messages: list[Message]) -> tuple[str, list[Message]]:
    """The last user message's content and the messages after it ("" and [] if
    there is no user message)."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            return messages[index].content, messages[index + 1 :]
    return "", []


def _is_tool_command(request: str) -> bool:
    command = request.split(maxsplit=1)[0] if request else ""
    return command == TOOL_COMMAND


def _split_tool_command(request: str) -> tuple[str, str]:
    """Split "/tool NAME {...}" into ("NAME", "{...}"); a bare "/tool" has no name."""
    parts = request.split(maxsplit=2)
    tool_name = parts[1] if len(parts) > 1 else ""
    raw_arguments = parts[2] if len(parts) > 2 else ""
    return tool_name, raw_arguments


def _count_tool_calls(messages: list[Message]) -> int:
    return sum(len(message.tool_calls) for message in messages if message.role == "assistant")
