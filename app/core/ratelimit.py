"""Per-token rate limits in fixed windows, counted in storage every worker shares.

One atomic "increment or restart the window" per request: in a memory-mapped
table in the data directory (by default: SQLite serves one host), an UPSERT
in the PostgreSQL database, or INCR in Redis. Counters are disposable, so the
mapped table is never synced to disk.

Storage that fails or hangs must neither slow every request nor switch the
limits off unnoticed: each Redis call is bounded by ``[redis] timeout_secs``,
a failure stops the counting for ``STORAGE_RETRY_SECONDS`` (a circuit breaker),
and meanwhile ``[rate_limits] on_storage_error`` decides: ``allow`` lets
requests through uncounted, ``deny`` answers 503. Uncounted requests are
logged at warn and counted in ``GET /api/v1/status``.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import math
import mmap
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from app.core.errors import ServiceUnavailable
from app.core.settings import parse_limit

log = logging.getLogger("http::ratelimit")

# How long counting stops after a storage failure, and the least time between two warnings about it.
STORAGE_RETRY_SECONDS = 5.0
FAILURE_LOG_INTERVAL = 30.0


# PostgreSQL's (DatabaseCounters): the one store that runs SQL.
UPSERT = (
    "INSERT INTO rate_counter (key, window_start, count) VALUES (%s, %s, 1) "
    "ON CONFLICT (key) DO UPDATE SET "
    "count = CASE WHEN rate_counter.window_start = excluded.window_start "
    "THEN rate_counter.count + 1 ELSE 1 END, "
    "window_start = excluded.window_start RETURNING count"
)
SWEEP = "DELETE FROM rate_counter WHERE window_start < %s"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # epoch seconds when the window ends
    retry_after: int

    def headers(self) -> dict:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class MappedCounters:
    """Counters in ``<data dir>/ratelimit.counters``, a memory-mapped table every worker of the host shares.

    A fixed table of slots (key hash, window end, window start, count), the
    key's slot found by open addressing from its hash. An increment is a few
    memory reads and writes under a lock on the file (and a process-local lock
    for native threads), so it never waits on the disk: the kernel writes the
    pages back when it likes, and a lost file only restarts the windows. A slot
    whose window has ended is free for any key; when every slot a key may use
    is live, the one ending first is taken over (that key's count restarts).
    """

    SLOTS = 1 << 16  # 2 MiB: far more identities than one host serves at once
    PROBES = 32
    _HEADER = struct.Struct("<8sQ")
    _SLOT = struct.Struct("<QqqQ")
    _MAGIC = b"LGRC0001"
    _thread_lock = threading.Lock()  # one per process: fcntl locks do not exclude a process's own threads

    def __init__(self, path: Path, slots: int = SLOTS):
        self.path = path
        self.slots = slots
        self._size = self._HEADER.size + slots * self._SLOT.size
        self._fd = None
        self._map = None
        self._pid = None

    def _mapped(self) -> mmap.mmap:
        if self._map is None or self._pid != os.getpid():
            with self._thread_lock:
                self._open()
        return self._map

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        header = self._HEADER.pack(self._MAGIC, self.slots)
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            if os.pread(fd, self._HEADER.size, 0) != header or os.fstat(fd).st_size < self._size:
                # New, or laid out differently: start every window afresh. Zeroed in place, never
                # shrunk: a process still mapping a larger table must not fault on its pages.
                os.pwrite(fd, header + bytes(self._size - len(header)), 0)
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)
        self._fd, self._map, self._pid = fd, mmap.mmap(fd, self._size), os.getpid()

    def incr(self, key: str, window_start: int, period: int) -> int:
        table = self._mapped()
        digest = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") or 1
        with self._thread_lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                return self._count(table, digest, window_start, window_start + period)
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _count(self, table, digest: int, window_start: int, window_end: int) -> int:
        unpack, pack, width, base = self._SLOT.unpack_from, self._SLOT.pack_into, self._SLOT.size, self._HEADER.size
        free = oldest = None
        oldest_end = None
        for probe in range(self.PROBES):
            offset = base + ((digest + probe) % self.slots) * width
            owner, ends, started, count = unpack(table, offset)
            if owner == digest:
                count = count + 1 if started == window_start else 1
                pack(table, offset, digest, window_end, window_start, count)
                return count
            if free is None and (owner == 0 or ends <= window_start):
                free = offset
            if owner == 0:
                break  # slots are never emptied: the key is not further on
            if oldest_end is None or ends < oldest_end:
                oldest, oldest_end = offset, ends
        if free is None:
            log.warning("rate-limit table full around one key: a live counter was restarted")
            free = oldest
        pack(table, free, digest, window_end, window_start, 1)
        return 1

    def sweep(self, before: int) -> None:
        pass  # a slot whose window ended is reused in place


class DatabaseCounters:
    """Counters in the main database (used with PostgreSQL when Redis is not configured)."""

    def incr(self, key: str, window_start: int, period: int) -> int:
        from app.core.db import connection, database

        with connection():
            cursor = database.execute_sql(UPSERT, (key, window_start))
            return cursor.fetchone()[0]

    def sweep(self, before: int) -> None:
        from app.core.db import connection, database

        with connection():
            database.execute_sql(SWEEP, (before,))


class RedisCounters:
    def __init__(self, url: str, prefix: str = "lockgate:rl:", timeout: float = 0.25):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries: one call costs at most one timeout, and the breaker decides when to try again.
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                           retry=Retry(NoBackoff(), 0))
        self.prefix = prefix

    def incr(self, key: str, window_start: int, period: int) -> int:
        name = f"{self.prefix}{key}:{window_start}"
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(name)
        pipe.expire(name, period + 1)
        return int(pipe.execute()[0])

    def sweep(self, before: int) -> None:
        pass  # keys expire by themselves


class RateLimiter:
    def __init__(self, counters, settings):
        self.counters = counters
        self.settings = settings
        self.storage_errors = 0  # requests this process could not count
        self._skip_until = 0.0  # monotonic time until which counting is skipped
        self._last_failure_log = float("-inf")

    def limit_for(self, group: str) -> tuple[int, int]:
        return parse_limit(self.settings.get(f"rate_limits.{group}") or "30/s")

    def hit(self, group: str, identity: str, now: float | None = None) -> Decision | None:
        """The decision for one request; None when it goes uncounted (limits off, or storage failing and allowed)."""
        if not self.settings.get("rate_limits.enabled", True):
            return None
        if time.monotonic() < self._skip_until:
            return self._uncounted()
        limit, period = self.limit_for(group)
        now = time.time() if now is None else now
        window_start = int(now // period) * period
        reset = window_start + period
        try:
            count = self.counters.incr(f"{group}:{period}:{identity}", window_start, period)
        except Exception as exc:  # any failure of the store: counting must never take the API down with it
            self._storage_failed(exc)
            return self._uncounted()
        allowed = count <= limit
        return Decision(
            allowed=allowed,
            limit=limit,
            remaining=max(0, limit - count),
            reset=reset,
            retry_after=max(1, math.ceil(reset - now)),
        )

    def _storage_failed(self, exc: Exception) -> None:
        self._skip_until = time.monotonic() + STORAGE_RETRY_SECONDS
        if time.monotonic() - self._last_failure_log >= FAILURE_LOG_INTERVAL:
            self._last_failure_log = time.monotonic()
            log.warning("rate-limit storage failed (%s: %s); requests are %s uncounted, retrying every %gs",
                        type(exc).__name__, exc, self._policy() + "ed", STORAGE_RETRY_SECONDS)

    def _uncounted(self) -> None:
        self.storage_errors += 1
        if self._policy() == "deny":
            retry_after = math.ceil(max(1.0, self._skip_until - time.monotonic()))
            raise ServiceUnavailable("Rate limits cannot be counted right now; retry shortly",
                                     details={"reason": "rate-limit storage unavailable"},
                                     headers={"Retry-After": str(retry_after)})
        return None

    def _policy(self) -> str:
        return self.settings.get("rate_limits.on_storage_error")

    def report(self) -> dict:
        """This process's part of GET /api/v1/status."""
        return {
            "on_storage_error": self._policy(),
            "storage_errors": self.storage_errors,
            "storage_ok": time.monotonic() >= self._skip_until,
        }


def make_counters(settings, is_postgres: bool):
    redis_url = settings.get("redis.url")
    if redis_url:
        return RedisCounters(redis_url, timeout=settings.get("redis.timeout_secs"))
    if is_postgres:
        return DatabaseCounters()
    return MappedCounters(settings.data_dir / "ratelimit.counters")
