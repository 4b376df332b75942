"""Leases: a named right, held by one worker at a time, that outlives no dead worker.

A lease is a row (name, owner, expires_at). Its holder keeps extending it;
when the holder dies the row expires and another worker may take it. A
``HeldLease`` does the extending in its own greenlet and says at once when
the lease was lost, so long-running holders (a session's turn, a channel's
connection) stop instead of carrying on beside a new holder. Work that writes
what only the holder may write checks ``confirm()`` inside its transaction.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta

from peewee import IntegrityError

from app.core.db import connection, release_connection, transaction, utcnow
from app.core.models import Lease

log = logging.getLogger("core::leases")

OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

POLL_FIRST = 0.005
POLL_MAX = 0.1


def owner_id() -> str:
    # Recomputed after fork: the module may have been imported by a parent.
    global OWNER
    if f":{os.getpid()}:" not in OWNER:
        OWNER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return OWNER


def acquire(name: str, ttl: float) -> bool:
    """Take or renew the lease; True when this worker holds it now."""
    return _take(name, owner_id(), ttl)


def release(name: str) -> None:
    _drop(name, owner_id())


def _take(name: str, owner: str, ttl: float) -> bool:
    now = utcnow()
    expires = now + timedelta(seconds=ttl)
    with transaction():
        taken = (
            Lease.update(owner=owner, expires_at=expires)
            .where((Lease.name == name) & ((Lease.owner == owner) | (Lease.expires_at < now)))
            .execute()
        )
        if taken:
            return True
        try:
            with transaction():
                Lease.insert(name=name, owner=owner, expires_at=expires).execute()
            return True
        except IntegrityError:
            return False


def _extend(name: str, owner: str, ttl: float) -> bool:
    # Owner only, not expiry: an expired row still naming us was taken by nobody in between.
    expires = utcnow() + timedelta(seconds=ttl)
    return bool(Lease.update(expires_at=expires).where((Lease.name == name) & (Lease.owner == owner)).execute())


def _drop(name: str, owner: str) -> None:
    Lease.delete().where((Lease.name == name) & (Lease.owner == owner)).execute()


class HeldLease:
    """Lease ``name`` held by this worker and renewed every ``ttl / 3`` until released or lost.

    Lost means a renewal found the row gone or owned by another worker, or
    renewals kept failing for longer than the ttl (the row may have expired
    and been taken meanwhile). Then ``held`` turns false at once, ``on_lost()``
    runs in the renewing greenlet (or in the caller of ``confirm()``), and
    ``lost`` is set once it has returned: whoever waits on ``lost`` wakes to a
    loss already handled.
    """

    def __init__(self, name: str, ttl: float, on_lost=None, owner: str | None = None):
        self.name = name
        self.ttl = ttl
        self.on_lost = on_lost
        self.owner = owner
        self.lost = threading.Event()
        self._held = False
        self._losing = False
        self._guard = threading.Lock()
        self._stop_renewing = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._held and not self._losing

    def acquire(self, wait: float = 0) -> bool:
        """Take the lease, waiting up to ``wait`` seconds for its holder to let go; False if it stays taken.

        Waiting polls with short sleeps and returns the pooled connection
        between polls, so a waiter holds neither a connection nor a transaction.
        """
        if self.held:
            return True
        self.owner = self.owner or owner_id()
        deadline = time.monotonic() + wait
        delay = POLL_FIRST
        while True:
            with connection():
                taken = _take(self.name, self.owner, self.ttl)
            if taken:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            release_connection()
            time.sleep(min(delay, left))
            delay = min(delay * 2, POLL_MAX)
        with self._guard:
            self._held = True
            self._losing = False
            self.lost.clear()
        self._stop_renewing.clear()
        self._renewer = threading.Thread(target=self._renew, name=f"lease-{self.name}", daemon=True)
        self._renewer.start()
        return True

    def confirm(self) -> bool:
        """Inside the caller's transaction: is the lease still ours? Extends it when it is.

        One conditional update both checks and extends, atomically, so work whose
        worker stalled past the lease cannot write over the work of a newer holder.
        """
        if not self.held:
            return False
        if _extend(self.name, self.owner, self.ttl):
            return True
        self._lose("it belongs to another worker")
        return False

    def release(self) -> None:
        """Idempotent; a lost lease is left to its new holder."""
        with self._guard:
            if not self._held:
                return
            self._held = False
        self._stop_renewing.set()
        renewer = self._renewer
        if renewer is not None and renewer is not threading.current_thread():
            renewer.join(timeout=5)
        if self._losing:
            return
        try:
            with connection():
                _drop(self.name, self.owner)
        except Exception:
            log.warning("could not release lease %s; it expires on its own", self.name, exc_info=True)

    def __enter__(self) -> HeldLease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _renew(self) -> None:
        last_renewed = time.monotonic()
        while not self._stop_renewing.wait(self.ttl / 3):
            try:
                with connection():
                    renewed = _extend(self.name, self.owner, self.ttl)
            except Exception:
                if time.monotonic() - last_renewed <= self.ttl:
                    log.warning("could not renew lease %s", self.name, exc_info=True)
                    continue
                self._lose("renewals failed for longer than its ttl")
                return
            if not renewed:
                self._lose("it belongs to another worker")
                return
            last_renewed = time.monotonic()

    def _lose(self, why: str) -> None:
        with self._guard:
            if self._losing or not self._held:
                return
            self._losing = True
        self._stop_renewing.set()
        log.warning("lost lease %s: %s", self.name, why)
        try:
            if self.on_lost is not None:
                self.on_lost()
        except Exception:
            log.exception("on_lost callback of lease %s failed", self.name)
        finally:
            with self._guard:
                if self._losing:  # not when the handler (or another thread) took the lease afresh
                    self.lost.set()


def run_singleton(name: str, interval, step, ttl: float | None = None):
    """Every ``interval()`` seconds, run ``step()`` in whichever worker holds lease ``unit:<name>``.

    A singleton periodic unit of the supervisor, declared under ``name``.
    """
    # Imported here: the supervisor is built on this module.
    from app.core import supervisor

    return supervisor.declare(name, supervisor.every(interval, step), singleton=True, ttl=ttl)
