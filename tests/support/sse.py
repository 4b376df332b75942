"""Reading Server-Sent Events the way a browser's EventSource does, for tests and benchmarks.

One parser serves every reader: ``parse_sse`` for a body already received (a test client's
response, ``requests``' lines), and ``SseStream`` for a live stream read over a raw socket,
so a test sees exactly what was sent, including the chunk that ends the body.
"""

from __future__ import annotations

import codecs
import json
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlparse


@dataclass
class SseEvent:
    id: str | None = None
    event: str | None = None
    data: list[str] = field(default_factory=list)

    def json(self):
        return json.loads("\n".join(self.data))


class SseParser:
    """Lines in, events out: fields gather until a blank line; comments and ``retry`` are kept aside."""

    def __init__(self):
        self.comments: list[str] = []
        self.retry: int | None = None
        self.unknown: list[str] = []  # lines no event field explains: framing gone wrong, say
        self._event = SseEvent()

    def feed(self, line: str) -> SseEvent | None:
        """The event a blank line completes, else None."""
        if line == "":
            event, self._event = self._event, SseEvent()
            return event if event.data or event.event else None
        if line.startswith(":"):
            self.comments.append(line[1:].strip())
            return None
        key, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if key == "id":
            self._event.id = value
        elif key == "event":
            self._event.event = value
        elif key == "data":
            self._event.data.append(value)
        elif key == "retry" and value.isdigit():
            self.retry = int(value)
        else:
            self.unknown.append(line)
        return None


def parse_sse(lines) -> list[tuple[str, dict]]:
    """(event name, JSON data) for each event with data in a body or an iterable of lines."""
    if isinstance(lines, str):
        lines = lines.split("\n")
    parser = SseParser()
    events = [event for event in map(parser.feed, lines) if event]
    last = parser.feed("")  # a body may end without the blank line
    events += [last] if last else []
    return [(event.event, event.json()) for event in events if event.data]


class _ChunkedBody:
    """Undoes chunked transfer encoding as bytes arrive; ``ended`` once the terminating chunk came."""

    def __init__(self):
        self._raw = b""
        self.ended = False

    def feed(self, data: bytes) -> bytes:
        self._raw += data
        out = []
        while not self.ended:
            line_end = self._raw.find(b"\r\n")
            if line_end < 0:
                break
            size = int(self._raw[:line_end].split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.ended = True
                break
            end = line_end + 2 + size
            if len(self._raw) < end + 2:
                break
            out.append(self._raw[line_end + 2:end])
            self._raw = self._raw[end + 2:]
        return b"".join(out)


class _PlainBody:
    """A body sent without chunking (an error answer): ends at its Content-Length."""

    def __init__(self, length: int | None):
        self._left = length
        self.ended = length == 0

    def feed(self, data: bytes) -> bytes:
        if self._left is not None:
            data = data[:self._left]
            self._left -= len(data)
            self.ended = self._left == 0
        return data


class SseStream:
    """One GET of an event stream over a raw socket.

    ``timeout`` bounds each wait for data (None: wait for ever). ``ended`` is set only by the
    chunk that terminates the body; ``closed`` when the server dropped the connection instead.
    """

    def __init__(self, base_url: str, path: str, headers: dict, params: dict | None = None,
                 timeout: float | None = 10, http_version: str = "1.1", receive_buffer: int | None = None):
        parsed = urlparse(base_url)
        self.timeout = timeout
        self.sock = socket.socket()
        if receive_buffer is not None:
            # Before connecting, so that the window the server sees is this small.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        self.sock.connect((parsed.hostname, parsed.port))
        query = f"?{urlencode(params)}" if params else ""
        sent = {"Host": f"{parsed.hostname}:{parsed.port}", "Accept": "text/event-stream", **headers}
        lines = [f"GET {path}{query} HTTP/{http_version}"] + [f"{key}: {value}" for key, value in sent.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.parser = SseParser()
        self.closed = False
        self._pending: deque[SseEvent] = deque()
        self._text = ""
        self._decode = codecs.getincrementaldecoder("utf-8")().decode
        rest = self._read_head()
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._body = _ChunkedBody()
        else:
            length = self.headers.get("content-length")
            self._body = _PlainBody(int(length) if length else None)
        self._take(rest)

    @property
    def comments(self) -> list[str]:
        return self.parser.comments

    @property
    def retry(self) -> int | None:
        return self.parser.retry

    @property
    def ended(self) -> bool:
        return self._body.ended

    def _read_head(self) -> bytes:
        head = b""
        while b"\r\n\r\n" not in head:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"the server closed the connection before answering: {head!r}")
            head += data
        head, _, rest = head.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {}
        for line in header_lines:
            key, _, value = line.partition(":")
            self.headers[key.strip().lower()] = value.strip()
        return rest

    def _take(self, data: bytes) -> None:
        self._text += self._decode(self._body.feed(data))
        *lines, self._text = self._text.split("\n")
        for line in lines:
            event = self.parser.feed(line.rstrip("\r"))
            if event:
                self._pending.append(event)

    def receive_until(self, condition, timeout: float | None = None) -> bool:
        """Read until ``condition()`` holds: True then, False if the stream ended first.

        Raises TimeoutError when nothing satisfied it within ``timeout`` (default: the stream's).
        """
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while not condition():
            if self.ended or self.closed:
                return False
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"no matching data within {timeout}s")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if data:
                self._take(data)
            else:
                self.closed = True
        return True

    def next_event(self, timeout: float | None = None) -> SseEvent | None:
        """The next event, or None once the stream is over."""
        if self.receive_until(lambda: self._pending, timeout):
            return self._pending.popleft()
        return None

    def events_until(self, predicate, limit: int = 10_000) -> list[SseEvent]:
        seen = []
        for _ in range(limit):
            event = self.next_event()
            if event is None:
                break
            seen.append(event)
            if predicate(event):
                break
        return seen

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
