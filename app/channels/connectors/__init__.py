"""What every platform connector has in common: its errors, inbound messages, reply splitting, its registry.

A connector keeps one connection to its platform (``serve``) for the channel's
supervised unit, and sends replies and typing indicators over the platform's
REST API from whichever worker answers a message (``send``, ``typing``).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

HTTP_TIMEOUT = 15.0  # seconds for a REST call to a platform
SENTENCE_END = re.compile(r"[.!?…。！？][\"')\]]*\s")


class ChannelError(Exception):
    """A connection failure worth one line on the channel's status.

    ``permanent``: retrying as configured will not help (a rejected token);
    the channel shows ``disconnected`` and keeps trying slowly.
    """

    def __init__(self, reason: str, permanent: bool = False, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True)
class Inbound:
    """One message a platform delivered, as the dispatcher needs it."""

    external_id: str  # unique per channel: the same platform message is never handled twice
    chat_id: str
    user_id: str
    content: str
    thread: str | None = None
    username: str | None = None


def split(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at paragraphs, lines, sentences or words."""
    pieces = []
    text = text.strip() or text
    while len(text) > limit:
        cut = _cut_point(text, limit)
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text or not pieces:
        pieces.append(text)
    return pieces


def _cut_point(text: str, limit: int) -> int:
    window = text[:limit + 1]
    for separator in ("\n\n", "\n"):
        at = window.rfind(separator, 0, limit)
        if at > limit // 4:
            return at + len(separator)
    ends = [m.end() for m in SENTENCE_END.finditer(window) if m.end() <= limit]
    if ends and ends[-1] > limit // 4:
        return ends[-1]
    at = window.rfind(" ", 0, limit)
    return at + 1 if at > limit // 4 else limit


def connector_for(config):
    """The connector of a channel's type, built from its configuration."""
    module = importlib.import_module(f"app.channels.connectors.{config.type}")
    return module.Connector(config)
