"""Sessions go idle, then end, without activity: one worker at a time checks."""

from __future__ import annotations

import logging
from datetime import timedelta

from app.core.db import utcnow
from app.core.leases import run_singleton
from app.sessions import service
from app.sessions.lock import forget_expired

log = logging.getLogger("agent::sessions")


def sweep_once(settings) -> tuple[int, int]:
    """Terminate sessions past ``agent.session_timeout_secs``, idle those past ``idle_after_secs``.

    Termination goes first, so a session past both limits ends at once rather
    than passing through idle.
    """
    now = utcnow()
    terminated = service.terminate_inactive(now - timedelta(seconds=settings.get("agent.session_timeout_secs")))
    idled = service.idle_inactive(now - timedelta(seconds=settings.get("agent.idle_after_secs")))
    forget_expired()
    if terminated or idled:
        log.info("sessions: %d became idle, %d timed out", idled, terminated)
    return idled, terminated


def start(state):
    return run_singleton(
        "sessions-sweeper",
        lambda: state.settings.get("agent.sweep_interval_secs"),
        lambda: sweep_once(state.settings),
    )
