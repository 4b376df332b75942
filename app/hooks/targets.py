"""Where deliveries go: URL rules, the private-address policy and a pinned HTTP client.

A hook URL must not become a way into the gateway's own network (SSRF).
Every address a host resolves to is checked, and the connection is made to
an address that was checked, with the original host in the Host header and
the TLS SNI. A DNS answer that changes between check and connect (rebinding)
therefore cannot redirect the request.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048
RESPONSE_EXCERPT_BYTES = 1024
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefused(Exception):
    """The target is not allowed (a policy decision: retrying will not help)."""


class TransportError(Exception):
    """The request did not complete: resolution, connection, TLS, timeout, bad response."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent on the request line


@dataclass(frozen=True)
class Response:
    status: int
    excerpt: str
    retry_after: float | None


def parse(url: str) -> Target:
    """Check a hook URL's shape; ValueError with the reason when it is unusable."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise ValueError("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # an unbalanced IPv6 bracket, for one
        raise ValueError("is not well formed") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError("must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise ValueError("must not contain credentials; receivers authenticate deliveries by signature")
    if not hostname:
        raise ValueError("must name a host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise ValueError("has an invalid port") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, hostname, port, path)


def blocked_reason(address: str) -> str | None:
    """Why an address may not be a target (``"loopback"``, ``"private"``...), or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6:
        # Addresses that embed an IPv4 address reach that address.
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip.teredo is not None:
            ip = ip.teredo[1]
    checks = (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("unspecified", ip.is_unspecified),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("non-public", not ip.is_global),
    )
    return next((label for label, hit in checks if hit), None)


def resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise TransportError(f"cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def allowed_addresses(target: Target, allow_private: bool) -> list[str]:
    """The addresses to connect to; TargetRefused when any of them is not public."""
    addresses = resolve(target.host, target.port)
    if not allow_private:
        for address in addresses:
            reason = blocked_reason(address)
            if reason:
                raise TargetRefused(f"{target.host} resolves to a {reason} address ({address})")
    return addresses


_tls_context: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    global _tls_context
    if _tls_context is None:
        _tls_context = ssl.create_default_context()
    return _tls_context


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to a given address; Host (and SNI for TLS) stay the URL's host."""

    def __init__(self, target: Target, address: str, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self.address = address
        self.raw_socket: socket.socket | None = None

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.raw_socket = sock
        return sock

    def connect(self):
        self.sock = self._open()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    def connect(self):
        self.sock = tls_context().wrap_socket(self._open(), server_hostname=self.host)


class _Watchdog:
    """Ends the exchange at the deadline: socket timeouts alone bound each read, not the total."""

    def __init__(self, connection: _PinnedHTTPConnection, seconds: float):
        self.connection = connection
        self.fired = False
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True

    def _fire(self):
        self.fired = True
        sock = self.connection.raw_socket
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()


def pinned_connection(target: Target, address: str, timeout: float) -> http.client.HTTPConnection:
    """An unopened connection to a checked ``address`` of ``target`` (Host and SNI stay the URL's host)."""
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    return cls(target, address, timeout)


def post(target: Target, addresses: list[str], headers: dict, body: bytes, timeout: float) -> Response:
    """POST ``body``, trying each address in turn, all within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: TransportError | None = None
    for address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            return _post_once(target, address, headers, body, remaining)
        except _ConnectFailed as exc:
            last_error = TransportError(str(exc))  # the next address may answer
    raise last_error or TransportError(f"timed out after {timeout:g}s")


class _ConnectFailed(Exception):
    pass


def _post_once(target: Target, address: str, headers: dict, body: bytes, timeout: float) -> Response:
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    connection = cls(target, address, timeout)
    watchdog = _Watchdog(connection, timeout)
    try:
        with watchdog:
            try:
                connection.connect()
            except (TimeoutError, ConnectionRefusedError, OSError) as exc:
                if isinstance(exc, ssl.SSLError) or watchdog.fired:
                    raise
                raise _ConnectFailed(f"cannot connect to {address} port {target.port}: {_describe(exc)}") from None
            connection.request("POST", target.path, body=body, headers=headers)
            response = connection.getresponse()
            excerpt = response.read(RESPONSE_EXCERPT_BYTES)
    except _ConnectFailed:
        raise
    except (OSError, http.client.HTTPException) as exc:
        if watchdog.fired or isinstance(exc, socket.timeout):
            raise TransportError(f"timed out after {timeout:.3g}s") from None
        raise TransportError(_describe(exc)) from None
    finally:
        connection.close()
    return Response(response.status, excerpt.decode("utf-8", "replace"), _retry_after(response))


def _describe(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the receiver closed the connection without answering"
    if isinstance(exc, http.client.HTTPException):
        return f"invalid HTTP response: {type(exc).__name__}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the receiver"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _retry_after(response) -> float | None:
    value = response.getheader("Retry-After")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())
