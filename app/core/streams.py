"""Open event streams, counted across every worker: the per-token cap, and what status reports.

A worker sees only its own streams, so a cap kept in memory would let a client
spread over N workers hold N times the cap. Each open stream is a row instead
(token, owning worker, expiry) and the cap is checked against the rows of the
token under a lock (SQLite's single writer, a PostgreSQL advisory lock). A
worker renews the expiry of its rows while their streams are open, so the rows
of a worker that died lapse on their own instead of holding slots for ever.
A stream's row goes when its response closes; the server learns that a client
left at the stream's next write, so a slot may outlive its client by one
heartbeat (``[logs] heartbeat_secs``).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from datetime import timedelta

from flask import current_app, g, request
from peewee import EXCLUDED, BigIntegerField, CharField, DateTimeField, fn

from app.core.background import spawn_loop
from app.core.db import BaseModel, advisory_lock, connection, prepared, transaction, utcnow
from app.core.errors import RateLimited
from app.core.leases import owner_id

log = logging.getLogger("http::sse")

# A row outlives its worker by at most TTL; renewals come well within it.
TTL = timedelta(seconds=60)
RENEW_INTERVAL = 15.0
RENEW_BATCH = 500
# Streams are long-lived: a client refused one should not hammer the server for a slot.
RETRY_AFTER_SECS = 5
DROPPED_SLOW = "dropped_slow"


class StreamSlot(BaseModel):
    id = CharField(primary_key=True, max_length=32)
    token_id = CharField(max_length=64, index=True)
    owner = CharField(max_length=200)
    opened_at = DateTimeField()
    expires_at = DateTimeField(index=True)


class StreamTally(BaseModel):
    name = CharField(primary_key=True, max_length=64)
    count = BigIntegerField()


_local: set[str] = set()  # slot ids of this worker's open streams
_local_lock = threading.Lock()
_renewing = None  # the renewing loop's task


class Slot:
    """One open stream's place in its token's quota; ``release`` is safe to call more than once."""

    def __init__(self, slot_id: str):
        self.id = slot_id

    def release(self) -> None:
        with _local_lock:
            if self.id not in _local:
                return
            _local.discard(self.id)
        try:
            with connection():
                _free_slot(self.id)
        except Exception as exc:
            # No longer renewed, the row lapses within TTL.
            log.warning("could not free stream slot %s: %s", self.id, exc)


# Every stream opens and closes through these: SQL built once (see ``db.prepared``).
_lapsed_slots = prepared(lambda: StreamSlot.delete().where((StreamSlot.token_id == "")
                                                           & (StreamSlot.expires_at <= utcnow())))
_held_slots = prepared(lambda: StreamSlot.select(fn.COUNT(StreamSlot.id)).where(StreamSlot.token_id == ""))
_new_slot = prepared(lambda: StreamSlot.insert(id="", token_id="", owner="", opened_at=utcnow(), expires_at=utcnow()))
_free_slot = prepared(lambda: StreamSlot.delete().where(StreamSlot.id == ""))


def claim() -> Slot:
    """A slot for a stream of the current request's token; 429 beyond ``[gateway] max_streams_per_token``."""
    principal = g.get("principal")
    key = principal.token_id if principal is not None else f"ip:{request.remote_addr}"
    return acquire(key, current_app.extensions["lockgate"].settings.get("gateway.max_streams_per_token"))


def acquire(key: str, cap: int) -> Slot:
    now = utcnow()
    slot_id = secrets.token_hex(12)
    with transaction():
        advisory_lock(_lock_key(key))
        _lapsed_slots(key, now)
        held = _held_slots(key).fetchone()[0]
        if held < cap:
            _new_slot(slot_id, key, owner_id(), now, now + TTL)
    if held >= cap:
        raise RateLimited(
            f"This token has {held} event streams open, the most allowed; close one or retry later",
            details={"max_streams_per_token": cap, "open": held},
            headers={"Retry-After": str(RETRY_AFTER_SECS)},
        )
    with _local_lock:
        _local.add(slot_id)
    _start_renewing()
    return Slot(slot_id)


def _lock_key(key: str) -> int:
    digest = hashlib.blake2b(f"stream-slots:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _start_renewing() -> None:
    # Started by the first stream a worker opens, like the tailers: no stream, no loop.
    global _renewing
    with _local_lock:
        if _renewing is None or not _renewing.is_alive():
            _renewing = spawn_loop("stream-slots", lambda: RENEW_INTERVAL, renew)


def renew() -> int:
    """Push back the expiry of this worker's open slots; how many rows were renewed."""
    with _local_lock:
        ids = sorted(_local)
    if not ids:
        return 0
    renewed = 0
    expires_at = utcnow() + TTL
    with connection():
        for start in range(0, len(ids), RENEW_BATCH):
            renewed += (StreamSlot.update(expires_at=expires_at)
                        .where(StreamSlot.id.in_(ids[start:start + RENEW_BATCH]))
                        .execute())
    return renewed


def record_dropped() -> None:
    """Count a stream closed because its client stopped reading."""
    with connection():
        (StreamTally
         .insert(name=DROPPED_SLOW, count=1)
         .on_conflict(conflict_target=[StreamTally.name],
                      update={StreamTally.count: StreamTally.count + EXCLUDED.count})
         .execute())


# Read on every status request.
_open_count = prepared(lambda: StreamSlot.select(fn.COUNT(StreamSlot.id)).where(StreamSlot.expires_at > utcnow()))
_tally = prepared(lambda: StreamTally.select(StreamTally.count).where(StreamTally.name == ""))


def counts() -> dict:
    """Streams open in the whole deployment, and how many were closed on clients that stopped reading."""
    opened = _open_count(utcnow()).fetchone()[0]
    dropped = _tally(DROPPED_SLOW).fetchone()
    return {"open": int(opened or 0), "dropped_slow": int(dropped[0]) if dropped else 0}
