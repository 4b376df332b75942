"""A provider whose replies a test writes in advance, recording what it was asked."""

import re

from app.agent.providers import Completion, Provider, ProviderError, ProviderSettings, TextDelta, ToolCall, Usage


def reply(text="", calls=(), usage=(10, 5)):
    """A Completion; ``calls`` are (name, arguments) pairs."""
    tool_calls = [ToolCall(id=f"call_{name}_{index}", name=name, arguments=dict(arguments))
                  for index, (name, arguments) in enumerate(calls)]
    return Completion(content=text, tool_calls=tool_calls, usage=Usage(*usage),
                      stop_reason="tool_use" if tool_calls else "end_turn")


class ScriptedProvider(Provider):
    name = "scripted"

    def __init__(self, *replies):
        super().__init__(ProviderSettings(name="scripted"))
        self.replies = list(replies)
        self.requests = []  # (messages, tool specs) per call

    def complete(self, messages, tools):
        self.requests.append((list(messages), list(tools)))
        if not self.replies:
            raise AssertionError("the provider was asked more often than scripted")
        next_reply = self.replies.pop(0)
        if isinstance(next_reply, ProviderError):
            raise next_reply
        return next_reply

    def stream(self, messages, tools):
        completion = self.complete(messages, tools)
        for piece in re.findall(r"\S+\s*|\s+", completion.content):
            yield TextDelta(piece)
        yield completion
