"""MCP servers as the API and the status page see them, from every worker's recorded connection.

Each worker writes the state of its own connections (``app.mcp.models``);
listing a server merges the rows of the workers still refreshing theirs: it
is ``connected`` when every one of them is, ``error`` (with the reason) when
one of them failed, and ``connecting`` otherwise, including before any worker
has reported. Reconnecting goes through the supervisor's command on the
event bus, so every worker drops and re-opens its own connection.
"""

from __future__ import annotations

import json
from datetime import timedelta

from app.core import events, supervisor
from app.core.db import connection, transaction, utcnow
from app.core.errors import Conflict, NotFound
from app.mcp import config as server_config
from app.mcp.models import CONNECTED, CONNECTING, DISABLED, ERROR, McpServerState

HEARTBEAT_SECS = 10.0
# A row not refreshed for this long belongs to a worker that is gone.
STALE_SECS = 3 * HEARTBEAT_SECS


def unit_name(name: str) -> str:
    return f"mcp:{name}"


# ---- what workers record ----------------------------------------------------


def record(name: str, owner: str, transport: str, status: str, error: str | None = None,
           tools: list[str] | None = None, connected_at=None) -> None:
    now = utcnow()
    values = {"name": name, "owner": owner, "transport": transport, "status": status,
              "error": error[:2000] if error else None, "tools": json.dumps(tools or []),
              "connected_at": connected_at, "seen_at": now}
    with connection():
        (McpServerState.insert(id=f"{name}@{owner}", **values)
         .on_conflict(conflict_target=[McpServerState.id],
                      update={getattr(McpServerState, key): value for key, value in values.items()})
         .execute())


def heartbeat(owner: str) -> None:
    """This worker is alive: its rows stay in the listing."""
    with connection():
        McpServerState.update(seen_at=utcnow()).where(McpServerState.owner == owner).execute()


def forget(name: str, owner: str) -> None:
    with connection():
        McpServerState.delete().where(McpServerState.id == f"{name}@{owner}").execute()


# ---- what the API shows -------------------------------------------------------


def list_servers(settings) -> list[dict]:
    """Every configured server with its merged state (call with a connection)."""
    rows = _live_rows()
    return [_server(name, table, rows.get(name, [])) for name, table in sorted(server_config.tables(settings).items())]


def _live_rows() -> dict[str, list[McpServerState]]:
    fresh = utcnow() - timedelta(seconds=STALE_SECS)
    grouped: dict[str, list[McpServerState]] = {}
    for row in McpServerState.select().where(McpServerState.seen_at >= fresh).order_by(McpServerState.owner):
        grouped.setdefault(row.name, []).append(row)
    return grouped


def _server(name: str, table, rows: list[McpServerState]) -> dict:
    table = table if isinstance(table, dict) else {}
    transport = table.get("transport") if table.get("transport") in server_config.TRANSPORTS else None
    shown = {"name": name, "transport": transport, "status": CONNECTING, "error": None, "tools": [],
             "connected_at": None, "workers": [_worker(row) for row in rows]}
    if table.get("enabled") is False:
        return {**shown, "status": DISABLED, "workers": []}
    failed = [row for row in rows if row.status == ERROR]
    connected = [row for row in rows if row.status == CONNECTED]
    if failed:
        shown.update(status=ERROR, error=failed[0].error)
    elif rows and len(connected) == len(rows):
        shown["status"] = CONNECTED
    if connected:
        latest = max(connected, key=lambda row: row.connected_at)
        shown.update(tools=json.loads(latest.tools), connected_at=latest.connected_at)
    return shown


def _worker(row: McpServerState) -> dict:
    return {"owner": row.owner, "status": row.status, "error": row.error, "connected_at": row.connected_at}


def reconnect(settings, name: str) -> dict:
    """Ask every worker to drop and re-open its connection to ``name``."""
    tables = server_config.tables(settings)
    if name not in tables:
        raise NotFound(f"No MCP server named {name!r}", details={"servers": sorted(tables)})
    if isinstance(tables[name], dict) and tables[name].get("enabled") is False:
        raise Conflict(f"The MCP server {name!r} is disabled (mcp.servers.{name}.enabled = false)")
    with transaction():
        events.publish(f"{supervisor.TOPIC_PREFIX}restart", {"name": unit_name(name)})
    return {"name": name, "status": "reconnecting"}


# ---- counts -------------------------------------------------------------------


def live_connections() -> int:
    """Open connections to MCP servers, over every worker (one per server per worker)."""
    fresh = utcnow() - timedelta(seconds=STALE_SECS)
    with connection():
        return (McpServerState.select()
                .where((McpServerState.status == CONNECTED) & (McpServerState.seen_at >= fresh)).count())


def status_counts(settings) -> dict:
    """For GET /api/v1/status: servers connected (in every worker) out of those enabled, and open connections."""
    with connection():
        servers = [server for server in list_servers(settings) if server["status"] != DISABLED]
    return {"mcp": {"connected": sum(1 for server in servers if server["status"] == CONNECTED),
                    "total": len(servers), "connections": live_connections()}}
