"""Server-Sent Events: framing, per-stream queues, heartbeats and shutdown.

A stream reads from a bounded queue fed by a tailer. A client too slow to
keep up loses its stream (not the worker's memory) and reconnects with
``Last-Event-ID``, which resumes from the database without a gap.
"""

from __future__ import annotations

import json
import queue
import threading

from flask import Response, stream_with_context

from app.core.background import on_stop

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}

_CLOSE = object()
_open: set = set()
_open_lock = threading.Lock()


def frame(data, event: str | None = None, event_id=None) -> str:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event:
        lines.append(f"event: {event}")
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    lines.extend(f"data: {line}" for line in text.split("\n"))
    return "\n".join(lines) + "\n\n"


def comment(text: str = "heartbeat") -> str:
    return f": {text}\n\n"


class Subscription:
    """A bounded queue of items for one stream."""

    def __init__(self, maxsize: int = 2000):
        self._queue = queue.Queue(maxsize)
        self.overflowed = False
        with _open_lock:
            _open.add(self)

    def put(self, item) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.overflowed = True
            self.close()

    def get(self, timeout: float):
        """The next item, None on timeout, or raises StopIteration when closed."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _CLOSE:
            raise StopIteration
        return item

    def close(self) -> None:
        with _open_lock:
            _open.discard(self)
        try:
            self._queue.put_nowait(_CLOSE)
        except queue.Full:
            # Make room: the stream is ending anyway.
            try:
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._queue.put_nowait(_CLOSE)


def _close_all() -> None:
    with _open_lock:
        subscriptions = list(_open)
    for subscription in subscriptions:
        subscription.close()


on_stop(_close_all)


def open_count() -> int:
    with _open_lock:
        return len(_open)


def response(generator) -> Response:
    return Response(
        stream_with_context(generator),
        mimetype="text/event-stream",
        headers=SSE_HEADERS,
    )
