"""Parsing of the time expressions clients send: ISO 8601 instants and durations."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$", re.IGNORECASE)
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    match = DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration like 30s, 15m, 1h, 2d: {text!r}")
    return timedelta(seconds=float(match[1]) * UNIT_SECONDS[match[2].lower()])


def parse_instant(text: str) -> datetime:
    """ISO 8601 to naive UTC; a value without an offset is taken as UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def parse_since(text: str, now: datetime) -> datetime:
    """``since`` as either an instant or a duration before now."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_instant(text)
    except ValueError:
        raise ValueError(f"expected an ISO 8601 timestamp or a duration like 1h, 30m: {text!r}") from None
