"""Querying and tailing the stored log records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from app.core import sse
from app.core.db import connection, release_connection, utcnow
from app.core.logging import LEVELS
from app.core.models import LogEntry
from app.core.tailer import Tailer
from app.core.timeparse import parse_since
from app.logs.schemas import LogEntrySchema

DEFAULT_WINDOW = timedelta(hours=1)
REPLAY_BATCH = 500
_ENTRY = LogEntrySchema()

tailer = Tailer(LogEntry, interval=0.2)


@dataclass(frozen=True)
class LogFilter:
    level: str = "info"
    module: str | None = None
    since: datetime | None = None

    def where(self):
        clause = LogEntry.level >= LEVELS[self.level]
        if self.module:
            clause &= (LogEntry.module == self.module) | LogEntry.module.startswith(f"{self.module}::")
        if self.since is not None:
            clause &= LogEntry.timestamp >= self.since
        return clause

    def matches(self, entry) -> bool:
        if entry.level < LEVELS[self.level]:
            return False
        if self.module and not (entry.module == self.module or entry.module.startswith(f"{self.module}::")):
            return False
        return self.since is None or entry.timestamp >= self.since


def make_filter(level: str = "info", module: str | None = None, since: str | None = None,
                default_since: bool = True) -> LogFilter:
    """Raises ValueError for a bad ``since``; without one, the last hour (when default_since)."""
    now = utcnow()
    if since:
        start = parse_since(since, now)
    else:
        start = now - DEFAULT_WINDOW if default_since else None
    return LogFilter(level=level, module=module or None, since=start)


def to_dict(entry: LogEntry) -> dict:
    return _ENTRY.dump(entry)


def query(log_filter: LogFilter, limit: int) -> tuple[list[LogEntry], int]:
    """The newest ``limit`` matching entries, oldest first, and how many match in all."""
    matching = LogEntry.select().where(log_filter.where())
    total = matching.count()
    newest = list(matching.order_by(LogEntry.id.desc()).limit(limit))
    return newest[::-1], total


def _frame(entry: LogEntry) -> str:
    # Shared by every stream that receives this row: serialise once.
    cached = getattr(entry, "_sse_frame", None)
    if cached is None:
        cached = entry._sse_frame = sse.frame(to_dict(entry), event="log", event_id=entry.id)
    return cached


def _replay(log_filter: LogFilter, cursor: int):
    while True:
        with connection():
            rows = list(
                LogEntry.select()
                .where(log_filter.where() & (LogEntry.id > cursor))
                .order_by(LogEntry.id)
                .limit(REPLAY_BATCH)
            )
        yield from rows
        if len(rows) < REPLAY_BATCH:
            return
        cursor = rows[-1].id


class _Live:
    """What a live stream sends of each batch the tailer hands over: run in the tailer's greenlet."""

    __slots__ = ("log_filter", "cursor")

    def __init__(self, log_filter: LogFilter):
        self.log_filter = log_filter
        self.cursor = 0  # set to what the replay reached before the stream goes live

    def render(self, batch: list) -> str:
        frames = []
        for entry in batch:
            if entry.id > self.cursor and self.log_filter.matches(entry):
                self.cursor = entry.id
                frames.append(_frame(entry))
        # One write per poll, not per record: socket writes dominate fan-out cost. A lone
        # frame is passed as it is, the same object for every stream, encoded once.
        return frames[0] if len(frames) == 1 else "".join(frames)


def stream(log_filter: LogFilter, last_event_id: int | None, heartbeat: float, max_backlog: int):
    """SSE text for every matching entry after the cursor, then live ones, until shutdown or overflow."""
    live = _Live(log_filter)
    with sse.Subscription(max_backlog, render=live.render, heartbeat=heartbeat) as subscription:
        unsubscribe = tailer.subscribe(subscription.put)
        try:
            yield from _follow(subscription, live, last_event_id)
        finally:
            unsubscribe()


def _follow(subscription: sse.Subscription, live: _Live, last_event_id: int | None):
    # Held connections would exhaust the pool with many open streams.
    release_connection()
    log_filter = live.log_filter
    # From the head, nothing older is wanted: what is newer the tailer hands over, so there is
    # nothing to read back unless it has handed something over already (most opens: one query fewer).
    from_head = last_event_id is None and log_filter.since is None
    if last_event_id is not None:
        cursor = last_event_id
    elif log_filter.since is not None:
        cursor = 0
    else:
        cursor = tailer.head()
    yield "retry: 2000\n\n"
    while True:
        # Whatever the tailer handed over before this pass's reads is in the database for them.
        horizon = subscription.passed_id
        if not from_head or horizon > cursor:
            for entry in _replay(log_filter, cursor):
                if subscription.closed:
                    return  # the worker is stopping: a long history must not hold it up
                cursor = entry.id
                yield from subscription.written(_frame(entry))
        from_head = False
        live.cursor = cursor = max(cursor, horizon)
        if subscription.go_live(cursor):
            break
    yield from subscription.follow()


def sweep(retention_days: float, max_entries: int) -> int:
    """Delete entries older than the retention or beyond the newest ``max_entries``."""
    removed = 0
    if retention_days > 0:
        removed += LogEntry.delete().where(
            LogEntry.timestamp < utcnow() - timedelta(days=retention_days)
        ).execute()
    newest = LogEntry.select(LogEntry.id).order_by(LogEntry.id.desc()).first()
    if newest is not None and newest.id > max_entries:
        removed += LogEntry.delete().where(LogEntry.id <= newest.id - max_entries).execute()
    return removed
