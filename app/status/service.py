"""System status computed from live state."""

from __future__ import annotations

import time

from app.core import streams
from app.core.areas import areas
from app.core.db import database, local_writes
from app.status.schemas import StatusSchema

# How old the areas' part of the status may be when another worker changed it; this
# worker's own writes make it compute afresh at once. A dashboard polling every worker
# many times a second then costs the database a few queries a second, not per request.
SNAPSHOT_SECS = 0.1

_snapshot: tuple[float, int, object, dict] | None = None  # (computed at, local writes, settings data, parts)


def status(state) -> dict:
    """The status document in its JSON form: the areas' part serialised by ``StatusSchema`` once per snapshot.

    The head is plain strings, numbers and booleans already: a schema dump of it
    per request would cost more than the rest of the route.
    """
    return {
        "status": "healthy",
        "version": state.version,
        "uptime_secs": int(time.time() - state.started_at),
        "rate_limits": state.limiter.report(),
        **area_parts(state.settings),
    }


def area_parts(settings) -> dict:
    """What the areas say (serialised), shared by requests within ``SNAPSHOT_SECS`` while nothing here changed."""
    global _snapshot
    now, writes = time.monotonic(), local_writes()
    if _snapshot is not None:
        computed_at, seen_writes, seen_settings, parts = _snapshot
        if now - computed_at < SNAPSHOT_SECS and writes == seen_writes and settings.data is seen_settings:
            return parts
    parts = {
        "active_sessions": 0,
        "channels": {"connected": 0, "total": 0},
        "plugins": {"loaded": 0, "total": 0},
        "memory": {"backend": settings.get("memory.backend"), "entries": 0},
        "provider": {"name": settings.get("provider.name"), "model": settings.get("provider.model")},
    }
    # Each area fills in its part; one that is not built yet leaves true zeros.
    for area in areas():
        if area.status is not None:
            parts.update(area.status(settings))
    dumped = StatusSchema(only=tuple(parts)).dump(parts)
    _snapshot = (now, writes, settings.data, dumped)
    return dumped


def stream_counts(_settings) -> dict:
    """The event streams' part of the status: open in the whole deployment, and dropped on slow clients."""
    return {"streams": streams.counts()}


def database_reachable() -> bool:
    try:
        database.obj.ping()
        return True
    except Exception:
        return False
