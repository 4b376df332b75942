"""The agent runner: one turn of a conversation, for whatever owns that conversation.

Sessions, runtime executions, chat channels and skills all need the same thing:
send a conversation to the configured model, let it call the tools it may
call, and get its answer back. The runner does that and nothing more. It holds
no lock and stores nothing, so each caller keeps its own persistence and
concurrency rules around it.

A run is described by

- a ``Conversation``: the history as provider messages, and the new user message;
- an ``Identity``: the session or the execution it runs for, and the user when
  there is one; tools see it in their ``ToolContext``;
- a ``ToolPolicy`` (``app.agent.tools``): which registered tools are offered.
  The loop runs only offered tools, so a call to a forbidden one gets an error
  result and never runs;
- ``Contribution``s: the parts of the system prompt, in order (instructions,
  recalled memories, a skill's instructions...). A new source of prompt text
  adds its contribution to the list its caller passes; the runner only joins
  them.

The provider is built from ``[provider]`` for every run, so a configuration
change applies to the next run. A ``deadline`` bounds the run: each request
to the model waits at most until it, and the loop stops at the first step
past it (``DeadlineExceeded``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from app.agent.builtin_tools import default_registry
from app.agent.loop import TurnEvent, TurnResult, run_turn
from app.agent.memory import Scope, open_memory
from app.agent.providers import Message, Provider, ProviderSettings, create_provider
from app.agent.tools import ALL_TOOLS, ToolContext, ToolPolicy, ToolRegistry

MEMORY_HEADER = "Notes from earlier conversations with this user, most relevant first:"


@dataclass(frozen=True)
class Conversation:
    """What the model is asked about: the exchanges so far and the new user message."""

    user_message: str
    history: list[Message] = field(default_factory=list)


@dataclass(frozen=True)
class Identity:
    """Whom a run is for: exactly one of a session or an execution, and the user when known."""

    session_id: str | None = None
    execution_id: str | None = None
    user_id: str | None = None

    def __post_init__(self):
        if (self.session_id is None) == (self.execution_id is None):
            raise ValueError("a run belongs to a session or to an execution: give exactly one of the two ids")

    def tool_context(self, settings) -> ToolContext:
        return ToolContext(settings=settings, session_id=self.session_id, execution_id=self.execution_id,
                           user_id=self.user_id)


@dataclass(frozen=True)
class Contribution:
    """One part of the system prompt; empty text adds nothing."""

    source: str  # who added it: "instructions", "memory", "skill:<name>"...
    text: str


def instructions(text: str) -> Contribution:
    """The configured system prompt (``agent.system_prompt``) or an agent's own."""
    return Contribution("instructions", text)


def memory_notes(memories: Sequence[str]) -> Contribution:
    """Recalled memories as one contribution, one line each."""
    if not memories:
        return Contribution("memory", "")
    notes = "\n".join(f"- {' '.join(memory.split())}" for memory in memories)
    return Contribution("memory", f"{MEMORY_HEADER}\n{notes}")


def recalled(settings, query: str, scope: Scope) -> Contribution:
    """The memories most relevant to ``query`` within ``scope`` (``memory.top_k`` of them).

    Searches the database: call it with a connection, before the run rather
    than during it, so no connection is held while the model is waited on.
    """
    found = open_memory(settings.get("memory.backend")).recall(query, scope, settings.get("memory.top_k"))
    return memory_notes([item.content for item in found])


def prompt(conversation: Conversation, contributions: Sequence[Contribution] = ()) -> list[Message]:
    """The messages the model is sent: the system prompt, the history, the new message."""
    system = "\n\n".join(text for text in (part.text.strip() for part in contributions) if text)
    head = [Message("system", system)] if system else []
    return [*head, *conversation.history, Message("user", conversation.user_message)]


MIN_REQUEST_SECS = 0.05


def provider_for(settings, deadline: float | None = None, **overrides) -> Provider:
    """The ``[provider]`` of the settings, with ``overrides`` (an agent's own model, say) on top.

    With a ``deadline``, one request waits no longer than the time left.
    """
    values = {**settings["provider"], **overrides}
    if deadline is not None:
        left = max(MIN_REQUEST_SECS, deadline - time.monotonic())
        values["timeout"] = min(float(values.get("timeout") or left), left)
    return create_provider(ProviderSettings.from_mapping(values))


def run(
    settings,
    conversation: Conversation,
    identity: Identity,
    *,
    policy: ToolPolicy = ALL_TOOLS,
    contributions: Sequence[Contribution] = (),
    stream: bool = False,
    registry: ToolRegistry | None = None,
    provider: Provider | None = None,
    deadline: float | None = None,
) -> Iterator[TurnEvent]:
    """The turn as it happens: ``TextDelta`` pieces when ``stream``, tool calls
    started and finished, then the ``TurnResult``.

    ``registry`` defaults to the process-wide one; ``provider`` to the one
    ``[provider]`` names, built when the iteration starts. A provider failure
    raises ``ProviderError`` from the iteration, a run past its ``deadline``
    (a ``time.monotonic()`` value) ``DeadlineExceeded``.
    """
    model = provider or provider_for(settings, deadline)
    tools = (registry or default_registry()).offered(settings, policy)
    yield from run_turn(model, prompt(conversation, contributions), tools, identity.tool_context(settings),
                        settings.get("agent.max_tool_calls_per_turn"), stream=stream, deadline=deadline)


def answer(settings, conversation: Conversation, identity: Identity, **options) -> TurnResult:
    """The whole turn at once: the reply with its tool calls, steps and usage.

    Takes the keyword options of ``run`` except ``stream``.
    """
    *_, result = run(settings, conversation, identity, stream=False, **options)
    return result
