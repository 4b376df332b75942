"""Retention: one worker at a time trims logs, old bus events and stale rate counters."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from app.core import events
from app.core.db import utcnow
from app.core.leases import run_singleton
from app.logs import service

log = logging.getLogger("logs::retention")

EVENT_RETENTION = timedelta(hours=24)
COUNTER_RETENTION_SECS = 2 * 86400


def sweep_once(state) -> None:
    settings = state.settings
    removed = service.sweep(settings.get("logs.retention_days"), settings.get("logs.max_entries"))
    events.sweep(utcnow() - EVENT_RETENTION)
    state.limiter.counters.sweep(int(time.time()) - COUNTER_RETENTION_SECS)
    if removed:
        log.debug("retention removed %d log entries", removed)


def start(state):
    return run_singleton(
        "logs-retention",
        lambda: state.settings.get("logs.sweep_interval_secs"),
        lambda: sweep_once(state),
    )
