"""A small JSON-over-HTTP client for the platforms' REST APIs, whose waits another greenlet can cut short.

A Telegram long poll waits up to half a minute for the platform; stopping or
restarting the channel must not wait with it, so ``abort()`` shuts the
sockets of the requests in flight down and they fail at once.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from app.channels.connectors import HTTP_TIMEOUT, ChannelError

_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _tls
    if _tls is None:
        _tls = ssl.create_default_context()
    return _tls


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict | list | None  # None when the answer was not JSON
    headers: dict


class Http:
    def __init__(self, base_url: str, headers: dict | None = None, user_agent: str = "Lockgate-Channels"):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ChannelError("api_url must be an http:// or https:// URL", permanent=True)
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.headers = {"User-Agent": user_agent, **(headers or {})}
        self._guard = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()

    def call(self, method: str, path: str, payload=None, query: dict | None = None,
             timeout: float = HTTP_TIMEOUT, headers: dict | None = None) -> Reply:
        """One request; ``ChannelError`` when it did not complete (never with the URL, which may hold a token)."""
        target = self.prefix + path + (f"?{urlencode(query)}" if query else "")
        body = None if payload is None else json.dumps(payload).encode()
        sent = {**self.headers, **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/json; charset=utf-8"
        connection = self._connection(timeout)
        with self._guard:
            self._open.add(connection)
        try:
            connection.request(method, target, body=body, headers=sent)
            response = connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ChannelError(_describe(exc)) from None
        finally:
            with self._guard:
                self._open.discard(connection)
            connection.close()
        return Reply(response.status, _json(raw), {k.lower(): v for k, v in response.getheaders()})

    def abort(self) -> None:
        """Make every request in flight fail now (from any greenlet)."""
        with self._guard:
            connections = list(self._open)
        for connection in connections:
            sock = connection.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=_tls_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


def _json(raw: bytes):
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _describe(exc: Exception) -> str:
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "the platform did not answer in time"
    if isinstance(exc, ConnectionRefusedError):
        return "cannot connect to the platform: connection refused"
    if isinstance(exc, socket.gaierror):
        return "cannot resolve the platform's host"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the platform closed the connection without answering"
    if isinstance(exc, http.client.HTTPException):
        return f"invalid HTTP response from the platform ({type(exc).__name__})"
    return f"connection to the platform failed: {getattr(exc, 'strerror', None) or type(exc).__name__}"
