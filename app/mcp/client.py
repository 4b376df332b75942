"""A synchronous MCP client: the JSON-RPC session that any transport carries.

The official SDK is built on asyncio and anyio, which do not run under the
gevent workers; this client uses only threads (greenlets once gevent has
patched the worker), so one call waits without blocking the others. The
session speaks protocol 2025-06-18 and accepts an older version when the
server counters with one it knows: ``initialize``, then
``notifications/initialized``, then ``tools/list`` (following cursors) and
``tools/call``. It answers the server's ``ping`` and refuses what a gateway
cannot offer (sampling, elicitation, roots) with -32601. A
``notifications/tools/list_changed`` sets ``tools_changed`` for the owner of
the session to list the tools again.

A transport moves messages: ``start(deliver, closed)`` begins (it calls
``deliver(message)`` for each message from the server and ``closed(reason)``
once when the connection ends), ``send(message, timeout)`` sends one, and
``close()`` ends it. ``negotiated(version)`` tells it the protocol version
(Streamable HTTP echoes it in a header).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Any, Protocol

PROTOCOL_VERSION = "2025-06-18"
SUPPORTED_VERSIONS = ("2025-06-18", "2025-03-26", "2024-11-05")
METHOD_NOT_FOUND = -32601
# A server that pages without end would keep the connection from ever being ready.
MAX_TOOL_PAGES = 100
CLIENT_INFO = {"name": "lockgate", "version": "0.1.0"}


class McpError(Exception):
    """The server could not be reached or did not speak the protocol; the message says how."""


class RemoteError(McpError):
    """The server answered a request with a JSON-RPC error."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{message} (code {code})")
        self.code = code


class TimedOut(McpError):
    pass


class Disconnected(McpError):
    pass


class Transport(Protocol):
    def start(self, deliver, closed) -> None: ...
    def send(self, message: dict, timeout: float) -> None: ...
    def negotiated(self, version: str) -> None: ...
    def close(self) -> None: ...


class _Pending:
    def __init__(self):
        self.done = threading.Event()
        self.message: dict | None = None
        self.error: McpError | None = None


class Session:
    """One initialized connection to one MCP server."""

    def __init__(self, transport: Transport, name: str):
        self.transport = transport
        self.name = name
        self.log = logging.getLogger(f"mcp::{name}")
        self.protocol_version: str | None = None
        self.server_info: dict = {}
        self.closed_reason: str | None = None
        self.tools_changed = threading.Event()
        # Set when the tool list changed or the connection ended: the owner's loop waits on it.
        self.attention = threading.Event()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._guard = threading.Lock()

    # ---- life cycle ----------------------------------------------------------

    def open(self, timeout: float) -> None:
        """Start the transport and initialize; McpError (or a subclass) when that fails."""
        deadline = time.monotonic() + timeout
        self.transport.start(self._deliver, self._closed)
        result = self.request("initialize", {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},  # no roots, no sampling, no elicitation
            "clientInfo": CLIENT_INFO,
        }, _left(deadline), cancel=False)
        version = result.get("protocolVersion") if isinstance(result, dict) else None
        if version not in SUPPORTED_VERSIONS:
            raise McpError(f"the server speaks protocol version {version!r}; this gateway speaks "
                           f"{', '.join(SUPPORTED_VERSIONS)}")
        self.protocol_version = version
        self.server_info = result.get("serverInfo") if isinstance(result.get("serverInfo"), dict) else {}
        self.transport.negotiated(version)
        self.notify("notifications/initialized", _left(deadline))

    def close(self) -> None:
        self.transport.close()
        self._closed("closed by the gateway")

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    # ---- requests ------------------------------------------------------------

    def request(self, method: str, params: dict | None, timeout: float, cancel: bool = True) -> Any:
        """Send a request and wait for its result; RemoteError, TimedOut or Disconnected otherwise."""
        if self.closed_reason is not None:
            raise Disconnected(self.closed_reason)
        request_id = next(self._ids)
        pending = _Pending()
        with self._guard:
            self._pending[request_id] = pending
        message = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        deadline = time.monotonic() + timeout
        try:
            self.transport.send(message, timeout)
            if not pending.done.wait(_left(deadline)):
                if cancel:
                    self._cancel(request_id, f"no answer within {timeout:g}s")
                raise TimedOut(f"{method}: no answer within {timeout:g}s")
        finally:
            with self._guard:
                self._pending.pop(request_id, None)
        if pending.error is not None:
            raise pending.error
        answer = pending.message or {}
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            raise RemoteError(_int(error.get("code")), str(error.get("message") or "error without a message"))
        return answer.get("result")

    def notify(self, method: str, timeout: float, params: dict | None = None) -> None:
        message = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.transport.send(message, timeout)

    def list_tools(self, timeout: float) -> list[dict]:
        """Every tool of the server, following ``nextCursor`` page after page."""
        deadline = time.monotonic() + timeout
        tools, cursor = [], None
        for _ in range(MAX_TOOL_PAGES):
            result = self.request("tools/list", {"cursor": cursor} if cursor else {}, _left(deadline))
            page = result.get("tools") if isinstance(result, dict) else None
            if not isinstance(page, list):
                raise McpError("tools/list answered without a list of tools")
            tools.extend(tool for tool in page if isinstance(tool, dict))
            cursor = result.get("nextCursor")
            if not cursor:
                return tools
        raise McpError(f"tools/list still had more pages after {MAX_TOOL_PAGES}")

    def call_tool(self, name: str, arguments: dict, timeout: float) -> dict:
        result = self.request("tools/call", {"name": name, "arguments": arguments}, timeout)
        if not isinstance(result, dict):
            raise McpError("tools/call answered without a result object")
        return result

    def _cancel(self, request_id: int, reason: str) -> None:
        try:
            self.notify("notifications/cancelled", 5.0, {"requestId": request_id, "reason": reason})
        except McpError:
            pass  # the call has timed out either way

    # ---- from the server -------------------------------------------------------

    def _deliver(self, message: dict) -> None:
        if not isinstance(message, dict):
            self.log.warning("ignored a message that is not a JSON object")
            return
        method = message.get("method")
        if isinstance(method, str) and "id" in message:
            self._answer(message["id"], method)
        elif isinstance(method, str):
            self._notified(method, message.get("params"))
        elif "id" in message:
            with self._guard:
                pending = self._pending.get(message["id"])
            if pending is not None:
                pending.message = message
                pending.done.set()

    def _answer(self, request_id, method: str) -> None:
        if method == "ping":
            reply = {"jsonrpc": "2.0", "id": request_id, "result": {}}
        else:
            # sampling/createMessage, elicitation/create, roots/list and anything else: not offered.
            reply = {"jsonrpc": "2.0", "id": request_id,
                     "error": {"code": METHOD_NOT_FOUND, "message": f"Method not found: {method}"}}
        try:
            self.transport.send(reply, 10.0)
        except McpError as exc:
            self.log.warning("could not answer %s: %s", method, exc)

    def _notified(self, method: str, params) -> None:
        if method == "notifications/tools/list_changed":
            self.tools_changed.set()
            self.attention.set()
        elif method == "notifications/message" and isinstance(params, dict):
            self.log.info("%s", params.get("data"))

    def _closed(self, reason: str) -> None:
        with self._guard:
            if self.closed_reason is not None:
                return
            self.closed_reason = reason
            pending = list(self._pending.values())
        for waiting in pending:
            waiting.error = Disconnected(reason)
            waiting.done.set()
        self.attention.set()


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
