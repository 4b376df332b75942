"""Each worker's connections to the MCP servers: one supervised unit per server per worker.

The unit ``mcp:<name>`` runs in every worker (a stdio server is a child of
the worker that uses it). It connects, registers the server's tools in the
process's tool registry and keeps the connection until it is asked to stop
or the connection ends; then the tools are withdrawn, and a connection that
ended on its own is a crash of the unit, which the supervisor runs again
after its backoff (``[mcp] restart_first_secs`` doubling up to
``restart_max_secs``). A changed tool list (``notifications/tools/list_changed``)
is listed and registered again. The manager follows the configuration: a new
server gets its unit, a changed one reconnects, a removed or disabled one
stops.
"""

from __future__ import annotations

import copy
import logging
import threading

from app.core import background, events
from app.core import supervisor as supervisors
from app.core.db import utcnow
from app.core.leases import owner_id
from app.mcp import config as server_config
from app.mcp import service
from app.mcp import tools as mcp_tools
from app.mcp.client import McpError, Session
from app.mcp.config import HTTP, ConfigProblem, ServerConfig
from app.mcp.http import HttpTransport
from app.mcp.models import CONNECTED, CONNECTING, ERROR
from app.mcp.stdio import StdioTransport

log = logging.getLogger("mcp")

POLL_SECS = 0.2  # how soon a stop, a lost connection or a changed tool list is noticed


def open_session(config: ServerConfig, settings) -> Session:
    if config.transport == HTTP:
        transport = HttpTransport(config, settings.get("mcp.allow_private_urls"))
    else:
        transport = StdioTransport(config)
    return Session(transport, config.name)


class ServerUnit:
    """The run function of one server's unit in one worker."""

    def __init__(self, state, name: str, registry, owner: str):
        self.state, self.name, self.registry, self.owner = state, name, registry, owner

    def __call__(self, ctx) -> None:
        settings = self.state.settings
        table = server_config.tables(settings).get(self.name)
        try:
            config = server_config.parse(self.name, table if isinstance(table, dict) else {})
            session = open_session(config, settings)
        except ConfigProblem as exc:
            # Retrying cannot help: the unit waits for the table to change (which restarts it).
            self._record(str(table.get("transport", "")) if isinstance(table, dict) else "", ERROR, str(exc))
            ctx.ready()
            while not ctx.wait(3600):
                pass
            service.forget(self.name, self.owner)
            return
        try:
            self._serve(ctx, config, session, settings)
        finally:
            mcp_tools.withdraw(self.registry, config)
            if ctx.stopping:
                service.forget(self.name, self.owner)
            session.close()

    def _serve(self, ctx, config: ServerConfig, session: Session, settings) -> None:
        self._record(config.transport, CONNECTING)
        try:
            session.open(settings.get("mcp.connect_timeout_secs"))
            names = self._install(config, session, settings)
        except Exception as exc:
            self._record(config.transport, ERROR, str(exc) or type(exc).__name__)
            raise
        connected_at = utcnow()
        self._record(config.transport, CONNECTED, tools=names, connected_at=connected_at)
        log.info("mcp server %s connected (%s, protocol %s): %d tools", config.name, config.transport,
                 session.protocol_version, len(names))
        ctx.ready()
        while not ctx.wait(POLL_SECS):
            if session.closed:
                self._record(config.transport, ERROR, session.closed_reason)
                raise McpError(f"mcp server {config.name}: {session.closed_reason}")
            if session.tools_changed.is_set():
                session.tools_changed.clear()
                names = self._relist(config, session, settings, names)
                self._record(config.transport, CONNECTED, tools=names, connected_at=connected_at)

    def _install(self, config: ServerConfig, session: Session, settings) -> list[str]:
        listed = session.list_tools(settings.get("mcp.connect_timeout_secs"))
        return mcp_tools.install(self.registry, config, session, listed)

    def _relist(self, config: ServerConfig, session: Session, settings, names: list[str]) -> list[str]:
        try:
            names = self._install(config, session, settings)
        except McpError as exc:
            log.warning("mcp server %s: could not list its changed tools: %s", config.name, exc)
            return names
        log.info("mcp server %s: its tools changed: %s", config.name, ", ".join(names) or "none")
        return names

    def _record(self, transport: str, status: str, error: str | None = None, **values) -> None:
        try:
            service.record(self.name, self.owner, transport, status, error, **values)
        except Exception:
            log.warning("mcp server %s: could not record its state %s", self.name, status, exc_info=True)


class Manager:
    """Declares, restarts and stops this worker's server units as the configuration changes."""

    def __init__(self, state, supervisor=None, registry=None):
        from app.agent.builtin_tools import default_registry

        self.state = state
        self.supervisor = supervisor or supervisors.supervisor
        self.registry = registry or default_registry()
        self.owner = self.supervisor.owner or owner_id()
        self._guard = threading.Lock()
        self._seen: dict[str, dict] = {}
        self._heartbeat = None

    def start(self) -> Manager:
        self.reconcile(self.state.settings)
        self.state.settings_listeners.append(self.reconcile)
        # The worker that wrote a PATCH reloaded its settings without its listeners: the event tells it.
        events.subscribe("config.updated", lambda topic, payload: self.reconcile(self.state.settings))
        self._heartbeat = background.spawn_loop("mcp-heartbeat", lambda: service.HEARTBEAT_SECS,
                                                lambda: service.heartbeat(self.owner))
        return self

    def stop(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()

    def reconcile(self, settings) -> None:
        wanted = {name: copy.deepcopy(table) for name, table in server_config.enabled(settings).items()}
        with self._guard:
            added = [name for name in wanted if name not in self._seen]
            changed = [name for name in wanted if name in self._seen and self._seen[name] != wanted[name]]
            removed = [name for name in self._seen if name not in wanted]
            self._seen = wanted
        for name in added:
            self._start(settings, name)
        for name in changed:
            if self.supervisor.restart_unit(service.unit_name(name)):
                log.info("mcp server %s: configuration changed; reconnecting", name)
        for name in removed:
            self.supervisor.stop_unit(service.unit_name(name), timeout=None)

    def _start(self, settings, name: str) -> None:
        unit = service.unit_name(name)
        if unit in self.supervisor.units:
            self.supervisor.start_unit(unit)
            return
        backoff = (settings.get("mcp.restart_first_secs"), settings.get("mcp.restart_max_secs"))
        self.supervisor.declare(unit, ServerUnit(self.state, name, self.registry, self.owner), backoff=backoff)


def start(state) -> Manager:
    """This worker's MCP connections (an area background starter)."""
    return Manager(state).start()
