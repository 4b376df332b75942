"""A minimal SSE reader over a raw socket, so tests see exactly what was sent."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlparse


@dataclass
class SseEvent:
    id: str | None = None
    event: str | None = None
    data: list[str] = field(default_factory=list)

    def json(self):
        return json.loads("\n".join(self.data))


class SseStream:
    def __init__(self, base_url: str, path: str, headers: dict, params: dict | None = None, timeout: float = 10):
        parsed = urlparse(base_url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=timeout)
        query = f"?{urlencode(params)}" if params else ""
        lines = [f"GET {path}{query} HTTP/1.1", f"Host: {parsed.hostname}:{parsed.port}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.file = self.sock.makefile("rb")
        self.status = int(self.file.readline().split()[1])
        self.headers = {}
        while True:
            line = self.file.readline().decode().rstrip("\r\n")
            if not line:
                break
            key, _, value = line.partition(":")
            self.headers[key.strip().lower()] = value.strip()
        self.comments: list[str] = []
        self.ended = False
        self._buffer = b""

    def _read_line(self) -> str | None:
        """Next line of the event stream, undoing chunked transfer encoding."""
        while b"\n" not in self._buffer:
            size_line = self.file.readline()
            if not size_line:
                self.ended = True
                return None
            size = int(size_line.strip() or b"0", 16)
            if size == 0:
                self.file.readline()
                self.ended = True
                return None
            self._buffer += self.file.read(size)
            self.file.readline()
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def next_event(self) -> SseEvent | None:
        event = SseEvent()
        while True:
            line = self._read_line()
            if line is None:
                return None
            if line == "":
                if event.data or event.event:
                    return event
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "id":
                event.id = value
            elif key == "event":
                event.event = value
            elif key == "data":
                event.data.append(value)

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
