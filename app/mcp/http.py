"""The Streamable HTTP transport: one POST per message, answered with JSON or an SSE stream.

Each POST carries ``Accept: application/json, text/event-stream`` and, once
known, the ``Mcp-Session-Id`` the server gave at ``initialize`` and the
negotiated ``MCP-Protocol-Version``. A JSON answer holds the response; an SSE
answer may carry the server's own requests and notifications before the
response. A GET stream, when the server offers one, brings the notifications
that belong to no request (``tools/list_changed``).

The URL passes the webhooks' SSRF rules (``app.hooks.targets``): every address
the host resolves to must be public unless ``[mcp] allow_private_urls``, and
connections go to an address that was checked, so DNS rebinding cannot move
them elsewhere.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time

from app.hooks import targets
from app.mcp.client import Disconnected, McpError, TimedOut
from app.mcp.config import ConfigProblem, ServerConfig

MAX_BODY_BYTES = 16 * 1024 * 1024
EXCERPT_BYTES = 300
STREAM_RETRY_SECS = 1.0
# After the response arrives the server ends the stream; this long for that before the connection is dropped.
STREAM_END_SECS = 2.0
ACCEPT = "application/json, text/event-stream"
# What a kept-alive connection the server closed while it was idle fails with.
STALE_CONNECTION_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError,
                           http.client.RemoteDisconnected, http.client.BadStatusLine)


class HttpTransport:
    def __init__(self, config: ServerConfig, allow_private: bool):
        self.config = config
        self.allow_private = allow_private
        self.log = logging.getLogger(f"mcp::{config.name}")
        try:
            self.target = targets.parse(config.url)
        except ValueError as exc:
            raise ConfigProblem(f"mcp.servers.{config.name}.url: {exc}") from None
        self.addresses: list[str] = []
        self.session_id: str | None = None
        self.protocol_version: str | None = None
        self._deliver = self._closed = None
        self._idle: list[http.client.HTTPConnection] = []
        self._guard = threading.Lock()
        self._closing = threading.Event()
        self._stream: http.client.HTTPConnection | None = None

    def start(self, deliver, closed) -> None:
        try:
            self.addresses = targets.allowed_addresses(self.target, self.allow_private)
        except targets.TargetRefused as exc:
            raise McpError(f"refused: {exc} (see [mcp] allow_private_urls)") from None
        except targets.TransportError as exc:
            raise McpError(str(exc)) from None
        self._deliver, self._closed = deliver, closed

    def negotiated(self, version: str) -> None:
        self.protocol_version = version
        threading.Thread(target=self._listen, name=f"mcp-{self.config.name}-stream", daemon=True).start()

    # ---- sending -------------------------------------------------------------

    def send(self, message: dict, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
        connection, response = self._post(body, timeout)
        try:
            reusable = self._answer(message, response, connection, deadline)
        except BaseException:
            connection.close()
            raise
        self._release(connection, reusable and not response.will_close)

    def _post(self, body: bytes, timeout: float):
        """Send one POST; a kept-alive connection the server has closed meanwhile is replaced once."""
        connection, reused = self._connection(timeout)
        try:
            connection.request("POST", self.target.path, body=body, headers=self._headers("application/json"))
            return connection, connection.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            if reused and isinstance(exc, STALE_CONNECTION_ERRORS):
                return self._post(body, timeout)
            raise self._failure(exc, timeout) from None

    def _answer(self, message: dict, response, connection, deadline: float) -> bool:
        """Read one POST's answer and deliver what it holds; whether the connection may be used again."""
        if message.get("method") == "initialize":
            self.session_id = response.getheader("Mcp-Session-Id") or self.session_id
        status = response.status
        if status == 404 and self.session_id and message.get("method") != "initialize":
            response.read()
            reason = "the server ended the session (HTTP 404)"
            self._closed(reason)
            raise Disconnected(reason)
        if status >= 400:
            excerpt = response.read(EXCERPT_BYTES).decode("utf-8", "replace").strip()
            raise McpError(f"HTTP {status} from the server: {excerpt or response.reason}")
        kind = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        try:
            if kind == "text/event-stream":
                return self._read_stream(response, connection, deadline, message.get("id"))
            data = response.read(MAX_BODY_BYTES)
        except (OSError, http.client.HTTPException) as exc:
            raise self._failure(exc, max(deadline - time.monotonic(), 0)) from None
        if data.strip():
            self._deliver_json(data)
        return True

    def _deliver_json(self, data: bytes) -> None:
        try:
            decoded = json.loads(data)
        except ValueError:
            raise McpError("the server answered with a body that is not JSON") from None
        for message in decoded if isinstance(decoded, list) else [decoded]:
            self._deliver(message)

    def _read_stream(self, response, connection, deadline: float, request_id) -> bool:
        answered = [request_id is None]

        def until() -> float:
            return min(deadline, time.monotonic() + STREAM_END_SECS) if answered[0] else deadline

        for data in _events(response, connection, until):
            if data is None:  # the time given ran out
                if answered[0]:
                    return False
                raise TimedOut("no answer in the time given")
            message = _json(data)
            if message is None:
                continue
            self._deliver(message)
            if isinstance(message, dict) and message.get("id") == request_id and "method" not in message:
                answered[0] = True
        return True

    def _headers(self, content_type: str | None) -> dict:
        headers = {**self.config.headers, "Accept": ACCEPT if content_type else "text/event-stream"}
        if content_type:
            headers["Content-Type"] = content_type
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        if self.protocol_version:
            headers["MCP-Protocol-Version"] = self.protocol_version
        return headers

    def _failure(self, exc: Exception, timeout: float) -> McpError:
        if isinstance(exc, TimeoutError):
            return TimedOut(f"no answer within {timeout:g}s")
        reason = f"cannot reach the server: {getattr(exc, 'strerror', None) or exc or type(exc).__name__}"
        self._closed(reason)
        return Disconnected(reason)

    # ---- connections -----------------------------------------------------------

    def _connection(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        """A connection for one POST, and whether it was kept alive from an earlier one."""
        with self._guard:
            connection = self._idle.pop() if self._idle else None
        reused = connection is not None
        if connection is None:
            connection = targets.pinned_connection(self.target, self.addresses[0], timeout)
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        return connection, reused

    def _release(self, connection, reusable: bool) -> None:
        if reusable and not self._closing.is_set():
            with self._guard:
                self._idle.append(connection)
        else:
            connection.close()

    def close(self) -> None:
        self._closing.set()
        if self.session_id and self._deliver is not None:
            self._end_session()
        with self._guard:
            idle, self._idle = self._idle, []
            stream = self._stream
        for connection in idle:
            connection.close()
        if stream is not None and stream.sock is not None:
            try:
                stream.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _end_session(self) -> None:
        connection = targets.pinned_connection(self.target, self.addresses[0], 2.0)
        try:
            connection.request("DELETE", self.target.path, headers=self._headers(None))
            connection.getresponse().read()
        except (OSError, http.client.HTTPException):
            pass  # the session ends with the server's own timeout
        finally:
            connection.close()

    # ---- the server's own stream ----------------------------------------------

    def _listen(self) -> None:
        while not self._closing.is_set():
            offered = self._listen_once()
            if not offered or self._closing.wait(STREAM_RETRY_SECS):
                return

    def _listen_once(self) -> bool:
        """Follow the GET stream until it ends; False when the server offers none."""
        connection = targets.pinned_connection(self.target, self.addresses[0], 30.0)
        with self._guard:
            self._stream = connection
        if self._closing.is_set():  # closed before this stream existed for close() to end it
            return False
        try:
            connection.request("GET", self.target.path, headers=self._headers(None))
            response = connection.getresponse()
            kind = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
            if response.status != 200 or kind != "text/event-stream":
                return False
            connection.sock.settimeout(None)  # the stream is idle for as long as the server has nothing to say
            for data in _events(response, connection, lambda: None):
                message = _json(data) if data is not None else None
                if message is not None:
                    self._deliver(message)
        except (OSError, http.client.HTTPException, McpError) as exc:
            if not self._closing.is_set():
                self.log.debug("the server's stream ended: %s", exc)
        finally:
            connection.close()
        return True


def _events(response, connection, deadline):
    """The data of each SSE event in ``response``; None once ``deadline()`` (None: no limit) has passed."""
    lines: list[str] = []
    while True:
        until = deadline()
        if until is not None:
            left = until - time.monotonic()
            if left <= 0:
                yield None
                return
            connection.sock.settimeout(left)
        try:
            raw = response.readline(MAX_BODY_BYTES)
        except TimeoutError:
            yield None
            return
        if not raw:
            return
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if lines:
                yield "\n".join(lines)
            lines = []
        elif line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))


def _json(data: str):
    try:
        return json.loads(data)
    except ValueError:
        return None
