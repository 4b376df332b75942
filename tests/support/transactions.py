"""Transactions side by side: PostgreSQL runs them at once, SQLite one after the other (BEGIN IMMEDIATE)."""

from __future__ import annotations

import threading

from app.core.db import connection, transaction


def in_other_transaction(work):
    """Run ``work(ready)`` in its own transaction on another thread, returning once it sets ``ready``
    (it holds its rows by then). Returns the thread and the list its exception, if any, lands in."""
    ready, errors = threading.Event(), []

    def run():
        try:
            with connection(), transaction():
                work(ready)
        except Exception as exc:
            errors.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=run)
    thread.start()
    assert ready.wait(10)
    return thread, errors
