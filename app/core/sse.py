"""Server-Sent Events: framing, per-stream queues, stream slots, heartbeats and shutdown.

A stream is fed by a tailer: live, its records are written to the client's
socket from the tailer's greenlet, and what the socket does not take waits in
a bounded queue (``Subscription``, ``SocketWriter``). A client too slow to
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
import ssl
import threading
import time

from flask import Response, has_request_context, request, stream_with_context

from app.core import jsonbody, streams
from app.core.background import on_stop, spawn_loop, stopping
from app.core.db import unavailable_reason
from app.core.offhub import gevent_patched
from app.core.tailer import FAN_OUT_SLICE

log = logging.getLogger("http::sse")

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}

_CLOSE = object()
# The environ key of the server's response object (gunicorn's), for SocketWriter.
SERVER_RESPONSE = "lockgate.server_response"
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
    """What waits to be written to one stream.

    A stream subscribes before it replays from the database, and catches up
    first: while it does, batches are not queued (the database holds them);
    only the newest id handed over is kept, so the stream knows how far its
    replay must reach before ``go_live``. Live, a batch arriving while
    ``max_backlog`` records or more still wait closes the stream (so at most
    that plus one batch is held). Catching up, a stream is closed when
    ``max_backlog`` records go by while one of its writes is blocked: a
    client that stops reading, not one reading a long history.

    Live, each batch is passed through ``render`` (the stream's filter and
    framing; text, empty when nothing in it is for this stream) in the
    tailer's greenlet, so a stream with nothing to send is not woken. Under
    gunicorn's gevent workers the rendered text is then written to the
    client's socket there and then (see ``SocketWriter``); elsewhere it is
    queued for the stream's generator to yield. Without ``render`` the batch
    itself is queued. A live stream quiet for most of its ``heartbeat`` gets a
    comment the same way, from the worker's heartbeat loop (``beat``).

    Use it as a context manager in the stream's generator: leaving it closes
    the queue, and counts the stream as dropped when it overflowed.
    """

    def __init__(self, max_backlog: int = 10_000, render=None, heartbeat: float = 15.0):
        self._queue = _new_queue()
        self._max_backlog = max_backlog
        self._render = render
        self.heartbeat = heartbeat
        self._wrote_at = 0.0  # when something was last handed over to be written
        self._backlog = 0
        self._live = False
        self.passed_id = 0  # the newest record handed over while catching up
        self._passed_while_writing = 0
        self._writing = False
        self._lock = threading.Lock()
        self.overflowed = False
        self.closed = False
        environ = request.environ if has_request_context() else {}
        # The client's connection when served by gunicorn; None elsewhere (a test client).
        self._socket = environ.get("gunicorn.socket")
        self._environ = environ  # gunicorn's response object joins it once the route has returned
        self.writer: SocketWriter | None = None
        # With a writer: bytes are queued for, or being sent by, the stream's greenlet,
        # so new ones must queue behind them.
        self._sending = False
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
            if self.closed:
                return
            if self._live:
                taken = self._deliver(batch)
            else:
                taken = self._pass(batch)
            if taken:
                return
            self.overflowed = True
            waiting = self._backlog if self._live else self._passed_while_writing
        log.warning("stream closed: its client stopped reading (%d records waiting)", waiting)
        self.close()
        _shut_down(self._socket)

    def _pass(self, batch: list) -> bool:
        """Catching up: note the batch; False when too many went by while a write was blocked."""
        self.passed_id = batch[-1].id
        if self._writing:
            if self._passed_while_writing >= self._max_backlog:
                return False
            self._passed_while_writing += len(batch)
        return True

    def _deliver(self, batch: list) -> bool:
        """Live: write or queue what the batch holds for this stream; False when too far behind."""
        item = batch if self._render is None else self._rendered(batch)
        if not item:
            return True
        return self._hand_over(item, len(batch), time.monotonic())

    def _hand_over(self, item, records: int, now: float) -> bool:
        """Write ``item`` now when nothing waits before it, else queue it; False when too far behind."""
        self._wrote_at = now
        if self.writer is not None and not self._sending:
            try:
                item = self.writer.try_write(item)
            except OSError:  # the client has gone
                self._end()
                return True
            if not item:
                return True
            self._sending = True  # the stream's greenlet finishes what the socket did not take
        if self._backlog >= self._max_backlog:
            return False
        self._backlog += records
        self._queue.put_nowait((item, records))
        return True

    def beat(self, now: float) -> None:
        """Send a comment when nothing went to this stream for most of a heartbeat and nothing waits.

        Called by the worker's one heartbeat loop: a pass over every stream
        costs less than a timer and a wake-up per stream, and a stream
        receiving records needs no heartbeat.
        """
        with self._lock:
            if self.closed or not self._live or self._sending or not self._queue.empty():
                return
            if now - self._wrote_at < self.heartbeat * (1 - 1 / BEATS_PER_HEARTBEAT):
                return
            text = comment()
            self._hand_over(text if self.writer is None else self.writer.frame(text), 0, now)

    def _rendered(self, batch: list):
        try:
            text = self._render(batch)
        except Exception:
            # The client reconnects and replays from the database.
            log.exception("stream closed: rendering a batch failed")
            self._end()
            return None
        if text and self.writer is not None:
            return self.writer.frame(text)
        return text

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
        over since it was read is in the database by now. Call it once the
        stream has written something, so its response headers are out.
        """
        with self._lock:
            if self.passed_id > replayed_through:
                return False
            self._live = True
            self._wrote_at = time.monotonic()
            if self._render is not None:
                self.writer = SocketWriter.for_response(self._environ.get(SERVER_RESPONSE))
        _start_beating()
        if self.writer is not None:
            log.debug("stream live: written straight to its socket (%s)",
                      "chunked" if self.writer.chunked else "not chunked")
        else:
            log.debug("stream live: written through the server")
        return True

    def get(self, timeout: float):
        """What was queued next, None on timeout, or raises StopIteration when closed."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _CLOSE:
            raise StopIteration
        with self._lock:
            self._backlog -= item[1]
        return item[0]

    def follow(self):
        """After ``go_live``, until closed or the worker stops: the text to write, records and
        heartbeats. With a socket writer nothing is yielded: this writes what the socket did not
        take from the tailer's and the heartbeat loop's writes."""
        while not stopping():
            try:
                item = self.get(timeout=None)
            except StopIteration:
                return
            if self.writer is None:
                yield item
            elif not self._send(item):
                return
        if self.writer is not None:
            self._finish()

    def _finish(self) -> None:
        """Send what is queued, so gunicorn's closing chunk follows whole chunks, not part of one."""
        while True:
            try:
                item = self.get(timeout=0)
            except StopIteration:
                return
            if item is None or not self._send(item):
                return

    def _send(self, data: bytes) -> bool:
        """Write ``data`` with a blocking send; False when the client has gone."""
        try:
            self.writer.write(data)
        except OSError:
            return False
        with self._lock:
            if self._queue.empty():
                self._sending = False
        return True

    def close(self) -> None:
        with _open_lock:
            _open.discard(self)
        with self._lock:
            self._end()

    def _end(self) -> None:
        # Called with the lock held. Once closed, nothing writes to the socket: gunicorn may
        # close it and its descriptor be reused.
        if self.closed:
            return
        self.closed = True
        self._queue.put_nowait(_CLOSE)


class SocketWriter:
    """Writes a live stream's bytes straight to its client's socket, from whichever greenlet has them.

    Through gunicorn, every write of a stream costs a greenlet switch, werkzeug's
    and gunicorn's layers and gevent's ``sendall`` on top of the send itself
    (docs/performance.md). So once a stream's headers are out and it is live,
    the tailer's greenlet writes each stream's new records itself, with one
    non-blocking write, framed as gunicorn frames that response: chunked or
    not is gunicorn's own decision, read off its response object. What the
    socket does not take at once is finished by the stream's greenlet with a
    blocking send, and whatever comes after queues behind it
    (``Subscription``), so bytes never interleave. The stream's generator
    writes nothing while live: gunicorn writes again only after it ends, the
    closing chunk.
    """

    __slots__ = ("_sock", "_fd", "chunked")

    def __init__(self, sock, chunked: bool):
        self._sock = sock
        self._fd = sock.fileno()
        self.chunked = chunked

    @classmethod
    def for_response(cls, server_response) -> SocketWriter | None:
        """A writer for gunicorn's response object once its headers are sent, under gevent; else None."""
        sock = getattr(server_response, "sock", None)
        chunked = getattr(server_response, "chunked", None)
        if sock is None or not isinstance(chunked, bool) or getattr(server_response, "headers_sent", None) is not True:
            return None
        if isinstance(sock, ssl.SSLSocket) or hasattr(sock, "do_handshake"):
            return None  # TLS: bytes must go through the SSL object
        if not gevent_patched():
            return None  # the stream's thread could not wait for a full socket without blocking
        try:
            if os.get_blocking(sock.fileno()):
                return None
        except (OSError, ValueError):
            return None
        return cls(sock, chunked)

    def frame(self, text: str) -> bytes:
        data = _encoded(text)
        if not self.chunked:
            return data
        return b"%X\r\n%s\r\n" % (len(data), data)

    def try_write(self, data: bytes) -> bytes:
        """Write what the socket takes now; the rest (empty when all went). OSError when the client has gone."""
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            return data
        return data[sent:]

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)


_last_encoded = ("", b"")


def _encoded(text: str) -> bytes:
    # Every stream given the same batch gets the same text object: encode it once.
    global _last_encoded
    last_text, last_data = _last_encoded
    if text is last_text:
        return last_data
    data = text.encode()
    _last_encoded = (text, data)
    return data


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


# Heartbeats: one loop per worker passes over every open stream a few times a heartbeat.
BEATS_PER_HEARTBEAT = 4
_beating = None  # the heartbeat loop's task
_beating_lock = threading.Lock()


def _start_beating() -> None:
    # Started by the first stream that goes live, like the tailers: no stream, no loop.
    global _beating
    with _beating_lock:
        if _beating is None or not _beating.is_alive():
            _beating = spawn_loop("sse-heartbeats", _beat_interval, _beat)


def _beat_interval() -> float:
    with _open_lock:
        shortest = min((subscription.heartbeat for subscription in _open), default=1.0)
    return shortest / BEATS_PER_HEARTBEAT


def _beat() -> None:
    now = time.monotonic()
    with _open_lock:
        subscriptions = list(_open)
    for n, subscription in enumerate(subscriptions, 1):
        subscription.beat(now)
        if n % FAN_OUT_SLICE == 0:
            time.sleep(0)


def _close_all() -> None:
    with _open_lock:
        subscriptions = list(_open)
    for subscription in subscriptions:
        subscription.close()


on_stop(_close_all)


class _StreamResponse(Response):
    def __call__(self, environ, start_response):
        # gunicorn's response object, for a SocketWriter: its own framing decision and socket.
        environ[SERVER_RESPONSE] = getattr(start_response, "__self__", None)
        return super().__call__(environ, start_response)


def response(generator, slot: streams.Slot) -> Response:
    """The streaming response; ``slot`` (from ``streams.claim()``) is freed when it closes, iterated or not.

    The generator runs to its first chunk here, in the route: a failure before the stream begins
    (the database unavailable, no connection free) is answered as any route's error is, in the
    error envelope, instead of by the server after the status line. One after it ends the stream,
    logged, and the client reconnects (with ``Last-Event-ID`` where the stream has ids).
    """
    try:
        first = next(generator, "")
    except BaseException:
        slot.release()
        raise
    stream = _StreamResponse(
        stream_with_context(_ended_on_error(first, generator)),
        mimetype="text/event-stream",
        headers=SSE_HEADERS,
    )
    stream.call_on_close(slot.release)
    return stream


def _ended_on_error(first: str, rest):
    yield first
    try:
        yield from rest
    except Exception as exc:
        reason = unavailable_reason(exc)
        if reason is not None:
            log.warning("stream ended early: %s", reason)
        else:
            log.exception("stream ended early by an unexpected error")
