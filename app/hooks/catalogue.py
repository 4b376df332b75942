"""The events a webhook can subscribe to: one list, documented in docs/events.md.

Areas that publish a new topic add it here (and to the document) so hooks can
subscribe to it; registration accepts only these names or ``"*"``.
"""

from __future__ import annotations

WILDCARD = "*"

EVENTS: dict[str, str] = {
    "session.created": "A session was opened",
    "session.idle": "A session had no activity for [agent] idle_after_secs",
    "session.terminated": "A session ended (by a client, a timeout or the agent)",
    "message.received": "A session received a user message",
    "message.sent": "The agent answered in a session",
    "config.updated": "The runtime configuration changed",
    "hook.disabled": "A webhook was deactivated after too many consecutive failed deliveries",
}

# Sent only by POST /api/v1/hooks/:id/test, to that hook; not subscribable.
PING = "ping"


def unknown(names: list[str]) -> list[str]:
    return [name for name in names if name != WILDCARD and name not in EVENTS]


def matches(subscribed: list[str], topic: str) -> bool:
    return topic in subscribed or (WILDCARD in subscribed and topic in EVENTS)
