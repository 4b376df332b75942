"""What the MCP API shows: the servers with their connection state, and a reconnect's answer."""

import marshmallow as ma

from app.core.schema import UtcDateTime


class WorkerConnectionSchema(ma.Schema):
    owner = ma.fields.String(metadata={"description": "The worker (host:pid:id) holding this connection"})
    status = ma.fields.String(metadata={"description": "connected, connecting or error"})
    error = ma.fields.String(allow_none=True)
    connected_at = UtcDateTime(allow_none=True)


class ServerSchema(ma.Schema):
    name = ma.fields.String(required=True)
    transport = ma.fields.String(allow_none=True, metadata={"description": "stdio or http"})
    status = ma.fields.String(metadata={"description": "connected (in every worker), connecting, error, disabled"})
    error = ma.fields.String(allow_none=True, metadata={"description": "Why it is not connected, in words"})
    tools = ma.fields.List(ma.fields.String(), metadata={
        "description": "The server's tool names; agents call them as <server>__<tool> (or its tool_prefix)"})
    connected_at = UtcDateTime(allow_none=True)
    workers = ma.fields.List(ma.fields.Nested(WorkerConnectionSchema))


class ServersSchema(ma.Schema):
    servers = ma.fields.List(ma.fields.Nested(ServerSchema))


class ReconnectSchema(ma.Schema):
    name = ma.fields.String()
    status = ma.fields.String(metadata={"description": "reconnecting"})
