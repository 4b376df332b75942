"""Per-token rate limits in fixed windows, counted in storage every worker shares.

One atomic "increment or restart the window" per request: an UPSERT in a
side SQLite file (by default), in the PostgreSQL database, or INCR in Redis.
Counters are disposable, so the SQLite side file skips fsync entirely.
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

from app.core.settings import parse_limit

log = logging.getLogger("http::ratelimit")

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
PROBE_PATHS = ("/api/v1/status/health", "/api/v1/health")

UPSERT = (
    "INSERT INTO rate_counter (key, window_start, count) VALUES ({p}, {p}, 1) "
    "ON CONFLICT (key) DO UPDATE SET "
    "count = CASE WHEN rate_counter.window_start = excluded.window_start "
    "THEN rate_counter.count + 1 ELSE 1 END, "
    "window_start = excluded.window_start RETURNING count"
)
SWEEP = "DELETE FROM rate_counter WHERE window_start < {p}"


def group_for(path: str, method: str) -> str:
    if path in PROBE_PATHS:
        return "probes"
    if path == "/api/v1/sessions" or path.startswith("/api/v1/sessions/"):
        return "sessions_read" if method in SAFE_METHODS else "sessions_write"
    if path == "/api/v1/config" and method not in SAFE_METHODS:
        return "config_write"
    return "default"


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
    def __init__(self, url: str, prefix: str = "lockgate:rl:"):
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
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
        self._last_failure_log = 0.0

    def limit_for(self, group: str) -> tuple[int, int]:
        return parse_limit(self.settings.get(f"rate_limits.{group}") or "30/s")

    def hit(self, group: str, identity: str, now: float | None = None) -> Decision | None:
        if not self.settings.get("rate_limits.enabled", True):
            return None
        limit, period = self.limit_for(group)
        now = time.time() if now is None else now
        window_start = int(now // period) * period
        reset = window_start + period
        try:
            count = self.counters.incr(f"{group}:{period}:{identity}", window_start, period)
        except Exception:  # counting must never take the API down with it
            self._log_failure()
            return None
        allowed = count <= limit
        return Decision(
            allowed=allowed,
            limit=limit,
            remaining=max(0, limit - count),
            reset=reset,
            retry_after=max(1, math.ceil(reset - now)),
        )

    def _log_failure(self):
        if time.monotonic() - self._last_failure_log > 10:
            self._last_failure_log = time.monotonic()
            log.exception("rate-limit storage failed; requests pass unlimited meanwhile")


def make_counters(settings, is_postgres: bool):
    redis_url = settings.get("redis.url")
    if redis_url:
        return RedisCounters(redis_url)
    if is_postgres:
        return DatabaseCounters()
    return SqliteCounters(settings.data_dir / "ratelimit.db")
