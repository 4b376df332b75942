"""Fan-out of an append-only table to in-process subscribers.

One loop per worker reads new rows (``id > last seen``) and hands them to
every local subscriber, so N open streams cost one query per poll, not N.
Rows are appended in id order by every writer (SQLite has one writer at a
time; PostgreSQL writers take an advisory lock), so a reader that has seen id
X has seen every row below X.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from app.core.background import spawn_loop
from app.core.db import connection, prepared

# Subscribers handed a batch between two chances for the rest of the worker to run.
FAN_OUT_SLICE = 500


class Tailer:
    def __init__(self, model, interval: float = 0.2, batch: int = 500):
        self.model = model
        self.interval = interval
        self.batch = batch
        self.last_id = None
        self._subscribers: list[Callable] = []
        self._lock = threading.Lock()
        self._task = None
        self._wakeup = threading.Event()
        # Asked by every stream as it opens.
        self._newest = prepared(lambda: model.select(model.id).order_by(model.id.desc()).limit(1))

    def subscribe(self, callback: Callable) -> Callable:
        """``callback(rows)`` for each batch of new rows; returns an unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)
            if self._task is None or not self._task.is_alive():
                self.last_id = None  # a loop that stopped saw nothing since: start from the head
                self._task = spawn_loop(f"tail-{self.model._meta.table_name}", lambda: self.interval, self.poll)

        def unsubscribe():
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def head(self) -> int:
        """The newest id in the table (0 when empty)."""
        with connection():
            row = self._newest(1).fetchone()  # the LIMIT
        return row[0] if row else 0

    def poll(self) -> None:
        if self.last_id is None:
            self.last_id = self.head()
        if not self._subscribers:
            self.last_id = self.head()
            return
        while True:
            with connection():
                rows = list(
                    self.model.select()
                    .where(self.model.id > self.last_id)
                    .order_by(self.model.id)
                    .limit(self.batch)
                )
            if not rows:
                return
            self.last_id = rows[-1].id
            for n, callback in enumerate(list(self._subscribers), 1):
                callback(rows)
                if n % FAN_OUT_SLICE == 0:
                    time.sleep(0)  # thousands of subscribers: let requests in between
            if len(rows) < self.batch:
                return
            # Let subscribers drain what they got before the next batch: a burst is not a slow client.
            time.sleep(0)
