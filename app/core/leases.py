"""Singletons by lease: work that must run in one worker at a time.

A lease is a row (name, owner, expires_at). The holder renews it; when its
worker dies the lease expires and another worker takes over.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from peewee import IntegrityError

from app.core.background import spawn_loop
from app.core.db import connection, transaction, utcnow
from app.core.models import Lease

OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_id() -> str:
    # Recomputed after fork: the module may have been imported by a parent.
    global OWNER
    if f":{os.getpid()}:" not in OWNER:
        OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return OWNER


def acquire(name: str, ttl: float) -> bool:
    """Take or renew the lease; True when this worker holds it now."""
    me, now = owner_id(), utcnow()
    expires = now + timedelta(seconds=ttl)
    with transaction():
        taken = (
            Lease.update(owner=me, expires_at=expires)
            .where((Lease.name == name) & ((Lease.owner == me) | (Lease.expires_at < now)))
            .execute()
        )
        if taken:
            return True
        try:
            with transaction():
                Lease.insert(name=name, owner=me, expires_at=expires).execute()
            return True
        except IntegrityError:
            return False


def release(name: str) -> None:
    Lease.delete().where((Lease.name == name) & (Lease.owner == owner_id())).execute()


def run_singleton(name: str, interval, step, ttl: float | None = None):
    """Every ``interval()`` seconds, run ``step()`` if this worker holds lease ``name``."""

    def tick():
        with connection():
            held = acquire(name, ttl or max(interval() * 3, 10.0))
        if held:
            with connection():
                step()

    return spawn_loop(f"singleton-{name}", interval, tick)
