"""Provider-neutral types shared by the agent loop and every LLM provider.

The agent loop only ever sees these types; each provider translates them to and
from its own wire format.
"""

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, fields


@dataclass
class ToolSpec:
    name: str
    description: str
    parameters: dict  # JSON schema of the arguments


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict


@dataclass
class Message:
    role: str  # "system" | "user" | "assistant" | "tool"
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)  # assistant only
    tool_call_id: str | None = None  # tool only
    name: str | None = None  # tool only: the tool's name


@dataclass
class Usage:
    input: int = 0
    output: int = 0


@dataclass
class Completion:
    content: str
    tool_calls: list[ToolCall]
    usage: Usage
    stop_reason: str  # "end_turn" | "tool_use" | "max_tokens" | other string


@dataclass
class TextDelta:
    text: str


@dataclass
class ProviderSettings:
    name: str = "echo"
    model: str = "echo-1"
    base_url: str = ""
    # Hidden from repr so settings can be logged without leaking the key.
    api_key: str = field(default="", repr=False)
    timeout: float = 60.0
    max_retries: int = 3
    retry_backoff: float = 0.5
    max_tokens: int = 1024

    @classmethod
    def from_mapping(cls, data: dict) -> "ProviderSettings":
        """Build settings from a config dict: unknown keys and None values are
        ignored, and values are coerced to the type of the field's default."""
        values = {}
        for setting in fields(cls):
            value = data.get(setting.name)
            if value is not None:
                values[setting.name] = _coerce(setting.name, value, type(setting.default))
        return cls(**values)


def _coerce(name: str, value, kind: type):
    try:
        return kind(value)
    except (TypeError, ValueError):
        # The value itself is left out of the message: it may be the api key.
        raise ProviderError(f"invalid provider setting {name!r}: expected {kind.__name__}") from None


class ProviderError(Exception):
    """A provider failure whose message is safe to show to API clients.

    `status` is the upstream HTTP status when there was one, else None.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


class Provider(ABC):
    name: str

    def __init__(self, settings: ProviderSettings):
        self.settings = settings

    @abstractmethod
    def complete(self, messages: list[Message], tools: list[ToolSpec]) -> Completion:
        """Return the model's whole reply to the conversation."""

    @abstractmethod
    def stream(self, messages: list[Message], tools: list[ToolSpec]) -> Iterator[TextDelta | Completion]:
        """Yield TextDelta items as text arrives, then the full Completion last."""


def parse_tool_arguments(raw: str) -> dict:
    """Decode tool-call arguments sent as a JSON string.

    Models sometimes produce broken JSON; rather than failing the whole turn the
    text is kept under "_raw" so the tool layer can report the problem back.
    """
    if not raw.strip():
        return {}
    try:
        arguments = json.loads(raw)
    except ValueError:
        return {"_raw": raw}
    if not isinstance(arguments, dict):
        return {"_raw": raw}
    return arguments
