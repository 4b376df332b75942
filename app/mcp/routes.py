from flask import current_app

from app.core.api import Blueprint
from app.mcp import service
from app.mcp.schemas import ReconnectSchema, ServersSchema

blp = Blueprint("mcp", __name__, url_prefix="/api/v1/mcp",
                description="MCP servers: their connections, and the tools they give agents",
                rate_limits=("mcp_read", "mcp_write"))


def _settings():
    return current_app.extensions["lockgate"].settings


@blp.route("", methods=["GET"])
@blp.response(200, ServersSchema)
def list_servers():
    """Every configured MCP server, its connection status over every worker, and its tools."""
    return {"servers": service.list_servers(_settings())}


@blp.route("/<name>/reconnect", methods=["POST"])
@blp.scope("admin")
@blp.response(200, ReconnectSchema)
def reconnect(name):
    """Drop and re-open the server's connection in every worker."""
    return service.reconnect(_settings(), name)
