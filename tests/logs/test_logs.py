"""The log pipeline in process on the real database backends: batched writes and retention."""

import logging
from datetime import timedelta

from app.core.db import connection, utcnow
from app.core.logging import DatabaseHandler
from app.core.models import LogEntry
from app.logs import service as logs


def test_records_are_written_in_batches_with_session_and_module(app):
    handler = DatabaseHandler()
    logger = logging.getLogger("agent::loop")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.info("tool call completed", extra={"session_id": "sess_1"})
        handler.handle(logging.LogRecord("channel::telegram", logging.WARNING, __file__, 1,
                                         "reconnecting %s", ("now",), None))
        with connection():
            assert LogEntry.select().count() == 0  # nothing written on the logging call
            assert handler.flush_to_database() == 2
            rows = list(LogEntry.select().order_by(LogEntry.id))
    finally:
        logger.removeHandler(handler)
    assert [(r.module, r.level, r.message, r.session_id) for r in rows] == [
        ("agent::loop", 20, "tool call completed", "sess_1"),
        ("channel::telegram", 30, "reconnecting now", None),
    ]


def test_retention_by_age_and_count(app):
    now = utcnow()
    with connection():
        LogEntry.insert_many([
            {"timestamp": now - timedelta(days=10), "level": 20, "module": "old", "message": "old"}
        ] + [
            {"timestamp": now, "level": 20, "module": "new", "message": f"new {i}"} for i in range(150)
        ]).execute()
        removed = logs.sweep(retention_days=7, max_entries=100)
        remaining = [r.message for r in LogEntry.select().order_by(LogEntry.id)]
    assert removed == 51
    assert remaining == [f"new {i}" for i in range(50, 150)]


def test_a_stream_from_the_head_reads_back_only_what_was_handed_over_before_it_went_live(app, monkeypatch):
    """Opened without a cursor, a stream starts at the newest record: the tailer hands over what is
    newer, so the database is read back only when a hand-over came before the stream went live."""
    from types import SimpleNamespace

    from app.core import sse

    reads = []
    monkeypatch.setattr(logs, "_replay", lambda log_filter, cursor: reads.append(cursor) or iter(()))
    monkeypatch.setattr(logs.tailer, "head", lambda: 10)

    def opened(handed_over):
        with sse.Subscription(max_backlog=10) as subscription:
            live = logs._Live(logs.LogFilter())
            follow = logs._follow(subscription, live, None)
            assert next(follow) == "retry: 2000\n\n"
            if handed_over:
                subscription.put([SimpleNamespace(id=n) for n in handed_over])
            subscription.close()  # so that following it ends at once
            assert list(follow) == []
            return live.cursor

    assert opened([]) == 10 and reads == []
    assert opened([11, 12]) == 12 and reads == [10]  # read back from the head, then live past the hand-over
