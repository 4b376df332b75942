"""Per-token rate limits in fixed windows, counted in storage every worker shares.

One atomic "increment or restart the window" per request: an UPSERT in a
side SQLite file (by default), in the PostgreSQL database, or INCR in Redis.
Counters are disposable, so the SQLite side file skips fsync entirely.

Storage that fails or hangs must neither slow every request nor switch the
limits off unnoticed: each Redis call is bounded by ``[redis] timeout_secs``,
a failure stops the counting for ``STORAGE_RETRY_SECONDS`` (a circuit breaker),
and meanwhile ``[rate_limits] on_storage_error`` decides: ``allow`` lets
requests through uncounted, ``deny`` answers 503. Uncounted requests are
logged at warn and counted in ``GET /api/v1/status``.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
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


UPSERT = (
    "INSERT INTO rate_counter (key, window_start, count) VALUES ({p}, {p}, 1) "
    "ON CONFLICT (key) DO UPDATE SET "
    "count = CASE WHEN rate_counter.window_start = excluded.window_start "
    "THEN rate_counter.count + 1 ELSE 1 END, "
    "window_start = excluded.window_start RETURNING count"
)
SWEEP = "DELETE FROM rate_counter WHERE window_start < {p}"


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


class SqliteCounters:
    """Counters in ``<data dir>/ratelimit.db``, one connection per process.

    A statement runs to completion without yielding to gevent, so greenlets of
    one worker can share the connection.
    """

    def __init__(self, path: Path):
        self.path = path
        self._conn = None
        self._pid = None
        self._lock = threading.Lock()

    def _connection(self):
        if self._conn is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=0.005, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 5")
            self._retry(lambda: conn.execute("PRAGMA journal_mode = wal"))
            conn.execute("PRAGMA synchronous = off")
            self._retry(lambda: conn.execute(
                "CREATE TABLE IF NOT EXISTS rate_counter "
                "(key TEXT PRIMARY KEY, window_start INTEGER NOT NULL, count INTEGER NOT NULL)"
            ))
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @staticmethod
    def _retry(run):
        delay = 0.001
        for _ in range(200):
            try:
                return run()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.02)
        return run()

    def incr(self, key: str, window_start: int, period: int) -> int:
        conn = self._connection()
        return self._retry(lambda: conn.execute(UPSERT.format(p="?"), (key, window_start)).fetchone()[0])

    def sweep(self, before: int) -> None:
        conn = self._connection()
        self._retry(lambda: conn.execute(SWEEP.format(p="?"), (before,)))


class DatabaseCounters:
    """Counters in the main database (used with PostgreSQL when Redis is not configured)."""

    def incr(self, key: str, window_start: int, period: int) -> int:
        from app.core.db import connection, database

        with connection():
            cursor = database.execute_sql(UPSERT.format(p="%s"), (key, window_start))
            return cursor.fetchone()[0]

    def sweep(self, before: int) -> None:
        from app.core.db import connection, database

        with connection():
            database.execute_sql(SWEEP.format(p="%s"), (before,))


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
    return SqliteCounters(settings.data_dir / "ratelimit.db")
