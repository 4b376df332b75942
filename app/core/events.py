"""The event bus: publish from any worker, every worker's subscribers receive it.

Events are rows of an append-only table, tailed by one loop per worker.
Publishers may register "in-transaction" listeners (``on_publish``): they run
inside the publishing transaction, which is how durable consumers such as
the webhook outbox record their work before the API call returns.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from app.core import jsonbody
from app.core.db import advisory_lock, before_commit, transaction, utcnow
from app.core.models import Event
from app.core.tailer import Tailer

log = logging.getLogger("core::events")

# Serialises appends on PostgreSQL so that ids commit in order (the tailer reads
# "id > last seen"). Taken just before commit, so only commits wait on each other.
EVENTS_LOCK_KEY = 0x4C6B6576

_in_transaction_listeners: list[Callable[[str, dict], None]] = []
_tailer = Tailer(Event, interval=0.2)


def on_publish(listener: Callable[[str, dict], None]) -> None:
    """Run ``listener(topic, payload)`` inside every publishing transaction."""
    if listener not in _in_transaction_listeners:
        _in_transaction_listeners.append(listener)


def publish(topic: str, payload: dict) -> None:
    """Record an event in the caller's transaction (or one of its own); subscribers see it once committed."""
    with transaction():
        for listener in _in_transaction_listeners:
            listener(topic, payload)
        before_commit(lambda: _append(topic, jsonbody.dumps(payload, default=str)))


def _append(topic: str, payload: str) -> None:
    advisory_lock(EVENTS_LOCK_KEY)
    Event.insert(topic=topic, payload=payload, created_at=utcnow()).execute()


def subscribe(prefix: str, callback: Callable[[str, dict], None]) -> Callable:
    """Call ``callback(topic, payload)`` in this worker for every event whose topic starts with prefix."""

    def deliver(rows):
        for row in rows:
            if row.topic.startswith(prefix):
                try:
                    callback(row.topic, json.loads(row.payload))
                except Exception:
                    log.exception("event subscriber for %s failed", prefix)

    return _tailer.subscribe(deliver)


def sweep(before) -> int:
    return Event.delete().where(Event.created_at < before).execute()
