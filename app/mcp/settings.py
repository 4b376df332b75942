"""MCP servers: one table per server under [mcp.servers], and how their connections are kept."""

from app.core.fields import Field

SECTIONS = {
    "mcp": {
        # [mcp.servers.<name>]: transport = "stdio" (command, args, env, cwd) or "http" (url, headers);
        # enabled, timeout_secs, tool_prefix, tags. Each table is checked by app.mcp.config.
        # What a stdio server runs is the file's to say: PATCH /api/v1/config cannot set it.
        "servers": Field("tables", {}, secret_keys=("headers", "env"), file_only_keys=("command", "args", "env", "cwd"),
            help="One table per MCP server ([mcp.servers.NAME]), see docs/mcp.md; command, args, env, cwd: file only."),
        "timeout_secs": Field("float", 30.0, minimum=0.05, maximum=3600,
            help="Longest wait for a tool call's answer when the server's table sets no timeout_secs."),
        "connect_timeout_secs": Field("float", 15.0, minimum=0.05, maximum=600,
            help="Longest wait for a server to start, initialize and list its tools."),
        "restart_first_secs": Field("float", 1.0, hot=False, minimum=0.05, maximum=3600,
            help="Wait before reconnecting a server after its first failure; doubled after each next one."),
        "restart_max_secs": Field("float", 60.0, hot=False, minimum=0.1, maximum=86_400,
            help="Longest wait between two reconnection attempts to a failing server."),
        "allow_private_urls": Field("bool", False,
            help="Let http servers be on loopback or private addresses (off: the webhooks' SSRF rules apply)."),
    },
    "rate_limits": {
        "mcp_read": Field("limit", "50/s", help="Limit of listing MCP servers."),
        "mcp_write": Field("limit", "10/s", help="Limit of reconnecting MCP servers."),
    },
}
