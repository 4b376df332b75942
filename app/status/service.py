"""System status computed from live state."""

from __future__ import annotations

import time

from app.core.db import database

# Areas register ``fn(settings) -> dict`` to fill in their part of the status;
# an area that is not built yet reports true zeros.
_contributors = []


def contribute(fn) -> None:
    if fn not in _contributors:
        _contributors.append(fn)


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
    }
    for contributor in _contributors:
        body.update(contributor(settings))
    return body


def database_reachable() -> bool:
    try:
        database.execute_sql("SELECT 1").fetchone()
        return True
    except Exception:
        return False
