"""The websocket side of Discord's gateway and Slack's Socket Mode: one connection, frames as JSON.

``websocket-client`` works on plain sockets, so under gevent its waits yield
to other greenlets; ``abort()`` from another greenlet ends a wait at once.
"""

from __future__ import annotations

import json
import struct
import threading

import websocket

from app.channels.connectors import ChannelError

CONNECT_TIMEOUT_SECS = 15.0


class Closed(Exception):
    """The other side closed the websocket; ``code`` is its close code (None when it just went away)."""

    def __init__(self, code: int | None, reason: str = ""):
        super().__init__(f"closed with code {code}: {reason}" if code else "connection lost")
        self.code = code
        self.reason = reason


class Socket:
    def __init__(self, url: str, read_timeout: float, header: list[str] | None = None):
        self._send_guard = threading.Lock()
        try:
            self.ws = websocket.create_connection(url, timeout=CONNECT_TIMEOUT_SECS, header=header or [],
                                                  enable_multithread=True)
        except websocket.WebSocketBadStatusHandshakeException as exc:
            raise ChannelError(f"the platform refused the websocket (HTTP {exc.status_code})") from None
        except (OSError, websocket.WebSocketException) as exc:
            raise ChannelError(f"cannot open the websocket: {_words(exc)}") from None
        self.ws.settimeout(read_timeout)

    def receive(self):
        """The next JSON message; a pong is ``None``. Raises ``Closed`` or ``ChannelError``."""
        while True:
            try:
                opcode, frame = self.ws.recv_data_frame(True)
            except websocket.WebSocketTimeoutException:
                raise ChannelError("the platform went silent (no frame within the read timeout)") from None
            except websocket.WebSocketConnectionClosedException:
                raise Closed(None) from None
            except (OSError, websocket.WebSocketException) as exc:
                raise ChannelError(f"websocket failed: {_words(exc)}") from None
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = struct.unpack("!H", frame.data[:2])[0] if len(frame.data) >= 2 else None
                raise Closed(code, frame.data[2:].decode("utf-8", "replace"))
            if opcode == websocket.ABNF.OPCODE_PONG:
                return None
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                try:
                    return json.loads(frame.data)
                except ValueError:
                    raise ChannelError("the platform sent a frame that is not JSON") from None

    def send(self, message: dict) -> None:
        try:
            with self._send_guard:
                self.ws.send(json.dumps(message))
        except (OSError, websocket.WebSocketException) as exc:
            raise ChannelError(f"websocket failed: {_words(exc)}") from None

    def ping(self) -> None:
        try:
            with self._send_guard:
                self.ws.ping()
        except (OSError, websocket.WebSocketException) as exc:
            raise ChannelError(f"websocket failed: {_words(exc)}") from None

    def abort(self) -> None:
        try:
            self.ws.abort()
        except Exception:
            pass

    def close(self, code: int = 1000) -> None:
        try:
            self.ws.close(status=code, timeout=1)
        except Exception:
            pass


def _words(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
