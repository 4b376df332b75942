"""What each worker's connection to each MCP server is doing, readable by every worker.

Connections are per worker (a stdio server is a child of its worker), so a
server has one row per worker holding it: ``<server>@<worker>``. A row is
refreshed while its worker lives (``seen_at``); the listing ignores rows
whose worker stopped refreshing them, so a killed worker's rows do not count.
"""

from peewee import CharField, DateTimeField, TextField

from app.core.db import BaseModel

CONNECTED, CONNECTING, ERROR, DISABLED = "connected", "connecting", "error", "disabled"


class McpServerState(BaseModel):
    id = CharField(primary_key=True, max_length=400)
    name = CharField(max_length=64, index=True)
    owner = CharField(max_length=200)
    transport = CharField(max_length=16)
    status = CharField(max_length=16)
    error = TextField(null=True)
    tools = TextField(default="[]")  # JSON list of the server's own tool names
    connected_at = DateTimeField(null=True)
    seen_at = DateTimeField()

    class Meta:
        table_name = "mcp_server_state"
