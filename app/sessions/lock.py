"""One turn at a time per session, whichever worker receives the messages.

Two layers, because a lease (``app.core.leases``) belongs to a worker, not
to a request: inside a worker a plain lock queues the greenlets that want the
same session; across workers the held lease ``session:<id>`` decides. The
lease is short and renewed while the turn runs, so a worker killed mid-turn
blocks its session only until the lease expires.

Waiting polls the lease with short sleeps (cooperative under gevent); no
database transaction or connection is held while waiting or while the turn
talks to the model.
"""

from __future__ import annotations

import threading
import time

from app.core.db import utcnow
from app.core.errors import Conflict
from app.core.leases import HeldLease
from app.core.models import Lease


class SessionBusy(Conflict):
    """409: the session's previous turn did not end within ``agent.lock_wait_secs``."""


def forget_expired() -> int:
    """Delete session locks left expired by workers that died mid-turn.

    An expired lease is free anyway; this only keeps the table from keeping
    one row per session ever interrupted.
    """
    return Lease.delete().where(Lease.name.startswith("session:") & (Lease.expires_at < utcnow())).execute()


class _WorkerLocks:
    """Named locks for the greenlets (or threads) of this process, dropped when unused."""

    def __init__(self):
        self._guard = threading.Lock()
        self._locks: dict[str, list] = {}  # name -> [lock, number of holders and waiters]

    def acquire(self, name: str, timeout: float) -> bool:
        with self._guard:
            entry = self._locks.setdefault(name, [threading.Lock(), 0])
            entry[1] += 1
        if entry[0].acquire(timeout=max(timeout, 0)):
            return True
        self._forget(name)
        return False

    def release(self, name: str) -> None:
        with self._guard:
            entry = self._locks[name]
            entry[0].release()
        self._forget(name)

    def _forget(self, name: str) -> None:
        with self._guard:
            entry = self._locks.get(name)
            if entry is not None:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[name]

    def __len__(self) -> int:
        return len(self._locks)


worker_locks = _WorkerLocks()


class SessionLock:
    def __init__(self, session_id: str, ttl: float, wait: float):
        self.session_id = session_id
        self.name = f"session:{session_id}"
        self.ttl = ttl
        self.wait = wait
        self._lease = HeldLease(self.name, ttl)
        self._held = False
        self._release_lock = threading.Lock()

    def acquire(self) -> SessionLock:
        """Wait up to ``wait`` seconds for the session; SessionBusy (409) when it stays taken."""
        deadline = time.monotonic() + self.wait
        if not worker_locks.acquire(self.name, deadline - time.monotonic()):
            raise self._busy()
        try:
            taken = self._lease.acquire(wait=max(deadline - time.monotonic(), 0))
        except BaseException:
            worker_locks.release(self.name)
            raise
        if not taken:
            worker_locks.release(self.name)
            raise self._busy()
        self._held = True
        return self

    def _busy(self) -> SessionBusy:
        return SessionBusy(
            f"Session {self.session_id} is busy with another message; try again",
            details={"waited_secs": self.wait},
        )

    def confirm(self) -> bool:
        """Inside the transaction that stores the turn: is the lease still ours?

        The conditional update both checks and extends it, atomically, so a turn
        whose worker stalled past the lease cannot write over a newer turn (a lost
        lease is only logged when the renewal notices: the turn runs to its end).
        """
        return self._lease.confirm()

    def release(self) -> None:
        """Idempotent: the turn's own cleanup and the response's close hook may both call it."""
        with self._release_lock:
            if not self._held:
                return
            self._held = False
        try:
            self._lease.release()
        finally:
            worker_locks.release(self.name)
