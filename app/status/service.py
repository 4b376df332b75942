"""System status computed from live state."""

from __future__ import annotations

import time

from app.core import streams
from app.core.areas import areas
from app.core.db import database


def status(state) -> dict:
    settings = state.settings
    body = {
        "status": "healthy",
        "version": state.version,
        "uptime_secs": int(time.time() - state.started_at),
        "active_sessions": 0,
        "channels": {"connected": 0, "total": 0},
        "plugins": {"loaded": 0, "total": 0},
        "memory": {"backend": settings.get("memory.backend"), "entries": 0},
        "provider": {"name": settings.get("provider.name"), "model": settings.get("provider.model")},
        "rate_limits": state.limiter.report(),
    }
    # Each area fills in its part; one that is not built yet leaves true zeros.
    for area in areas():
        if area.status is not None:
            body.update(area.status(settings))
    return body


def stream_counts(_settings) -> dict:
    """The event streams' part of the status: open in the whole deployment, and dropped on slow clients."""
    return {"streams": streams.counts()}


def database_reachable() -> bool:
    try:
        database.execute_sql("SELECT 1").fetchone()
        return True
    except Exception:
        return False
