"""The events a webhook can subscribe to: the topics every area declares, documented in docs/events.md.

Registration accepts only these names or ``"*"``.
"""

from __future__ import annotations

from app.core.areas import Topics

WILDCARD = "*"

EVENTS = Topics()

# Sent only by POST /api/v1/hooks/:id/test, to that hook; not subscribable.
PING = "ping"


def unknown(names: list[str]) -> list[str]:
    return [name for name in names if name != WILDCARD and name not in EVENTS]


def matches(subscribed: list[str], topic: str) -> bool:
    return topic in subscribed or (WILDCARD in subscribed and topic in EVENTS)
