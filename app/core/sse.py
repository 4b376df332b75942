"""Server-Sent Events: framing, per-stream queues, stream slots, heartbeats and shutdown.

A stream reads from a bounded queue fed by a tailer. A client too slow to
keep up loses its stream (not the worker's memory) and reconnects with
``Last-Event-ID``, which resumes from the database without a gap. A client
that stops reading altogether leaves its stream's writer blocked on a full
socket, where no queue item can reach it: the overflow shuts the connection
down under it, so the stream ends as if the client had gone.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading

from flask import Response, has_request_context, request, stream_with_context

from app.core import jsonbody, streams
from app.core.background import on_stop
from app.core.offhub import gevent_patched

log = logging.getLogger("http::sse")

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
    text = data if isinstance(data, str) else jsonbody.dumps(data, separators=(",", ":"))
    lines.extend(f"data: {line}" for line in text.split("\n"))
    return "\n".join(lines) + "\n\n"


def comment(text: str = "heartbeat") -> str:
    return f": {text}\n\n"


def _new_queue():
    # Under gevent its own queue wakes a waiting greenlet for half the cost of the
    # standard one, whose condition variable is built from patched locks in Python.
    if gevent_patched():
        import gevent.queue

        return gevent.queue.Queue()
    return queue.Queue()


class Subscription:
    """The batches of records waiting for one stream.

    A stream subscribes before it replays from the database, and catches up
    first: while it does, batches are not queued (the database holds them);
    only the newest id handed over is kept, so the stream knows how far its
    replay must reach before ``go_live``. Live, a batch arriving while
    ``max_backlog`` records or more still wait closes the stream (so at most
    that plus one batch is held). Catching up, a stream is closed when
    ``max_backlog`` records go by while one of its writes is blocked: a
    client that stops reading, not one reading a long history.

    Use it as a context manager in the stream's generator: leaving it closes
    the queue, and counts the stream as dropped when it overflowed.
    """

    def __init__(self, max_backlog: int = 10_000):
        self._queue = _new_queue()
        self._max_backlog = max_backlog
        self._backlog = 0
        self._live = False
        self.passed_id = 0  # the newest record handed over while catching up
        self._passed_while_writing = 0
        self._writing = False
        self._lock = threading.Lock()
        self.overflowed = False
        self.closed = False
        # The client's connection when served by gunicorn; None elsewhere (a test client).
        self._socket = request.environ.get("gunicorn.socket") if has_request_context() else None
        with _open_lock:
            _open.add(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
        if self.overflowed:
            streams.record_dropped()

    def put(self, batch: list) -> None:
        """Hand over a batch of rows (each with an ``id``), in id order."""
        with self._lock:
            if self.closed or self._take(batch):
                return
            self.overflowed = True
            waiting = self._backlog if self._live else self._passed_while_writing
        log.warning("stream closed: its client stopped reading (%d records waiting)", waiting)
        self.close()
        _shut_down(self._socket)

    def _take(self, batch: list) -> bool:
        """False when the stream is too far behind to take the batch."""
        if not self._live:
            self.passed_id = batch[-1].id
            if self._writing:
                if self._passed_while_writing >= self._max_backlog:
                    return False
                self._passed_while_writing += len(batch)
            return True
        if self._backlog >= self._max_backlog:
            return False
        self._backlog += len(batch)
        self._queue.put_nowait(batch)
        return True

    def written(self, chunk: str):
        """Yield ``chunk`` while catching up, marking the write so a blocked one is seen."""
        self._writing = True
        try:
            yield chunk
        finally:
            with self._lock:
                self._writing = False
                self._passed_while_writing = 0

    def go_live(self, replayed_through: int) -> bool:
        """Queue batches from now on, unless newer records went by than the replay reached.

        False means: replay again from ``replayed_through``; a record handed
        over since it was read is in the database by now.
        """
        with self._lock:
            if self.passed_id > replayed_through:
                return False
            self._live = True
            return True

    def get(self, timeout: float):
        """The next batch, None on timeout, or raises StopIteration when closed."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _CLOSE:
            raise StopIteration
        with self._lock:
            self._backlog -= len(item)
        return item

    def close(self) -> None:
        with _open_lock:
            _open.discard(self)
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self._queue.put_nowait(_CLOSE)


def _shut_down(sock) -> None:
    """End a connection whose writer may be blocked sending to a client that does not read.

    Shutdown acts on the connection, not on one descriptor: done through a
    duplicate, the blocked send fails with EPIPE, which gunicorn treats as a
    client that went away (gevent's own shutdown would wake it with EBADF
    instead, logged as a socket error).
    """
    if sock is None:
        return
    try:
        with socket.socket(fileno=os.dup(sock.fileno())) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone


def _close_all() -> None:
    with _open_lock:
        subscriptions = list(_open)
    for subscription in subscriptions:
        subscription.close()


on_stop(_close_all)


def response(generator, slot: streams.Slot) -> Response:
    """The streaming response; ``slot`` (from ``streams.claim()``) is freed when it closes, iterated or not."""
    stream = Response(
        stream_with_context(generator),
        mimetype="text/event-stream",
        headers=SSE_HEADERS,
    )
    stream.call_on_close(slot.release)
    return stream
