"""Parsing of the time expressions clients send: ISO 8601 instants and durations."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$", re.IGNORECASE)
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Longer than anything the service schedules or looks back over; bounds the arithmetic
# (a datetime minus 999999999 days overflows).
MAX_DURATION = timedelta(days=36_500)


def parse_duration(text: str) -> timedelta:
    """The one duration grammar: a number and a unit, ``500ms``, ``30s``, ``15m``, ``1h``, ``2d``, ``1w``."""
    match = DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration like 30s, 15m, 1h, 2d: {text!r}")
    seconds = float(match[1]) * UNIT_SECONDS[match[2].lower()]
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"durations are at most {MAX_DURATION.days} days: {text!r}")
    return timedelta(seconds=seconds)


def parse_instant(text: str) -> datetime:
    """ISO 8601 to naive UTC; a value without an offset is taken as UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def parse_since(text: str, now: datetime) -> datetime:
    """``since`` as either an instant or a duration before now."""
    if DURATION.match(text):
        return now - parse_duration(text)  # its own reason, e.g. longer than MAX_DURATION
    try:
        return parse_instant(text)
    except ValueError:
        raise ValueError(f"expected an ISO 8601 timestamp or a duration like 1h, 30m: {text!r}") from None
