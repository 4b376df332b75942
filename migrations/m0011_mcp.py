"""MCP servers: mcp_server_state, each worker's connection to each server."""

from peewee import CharField, DateTimeField, TextField

from migrations import frozen_model


def upgrade(db):
    state = frozen_model(db, "mcp_server_state", {
        "id": CharField(primary_key=True, max_length=400),
        "name": CharField(max_length=64, index=True),
        "owner": CharField(max_length=200),
        "transport": CharField(max_length=16),
        "status": CharField(max_length=16),
        "error": TextField(null=True),
        "tools": TextField(default="[]"),
        "connected_at": DateTimeField(null=True),
        "seen_at": DateTimeField(),
    })
    db.create_tables([state])
