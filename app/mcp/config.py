"""One MCP server's table, checked: what to start or where to post, and how its tools are named.

The settings schema only knows ``[mcp] servers`` as free-form tables; the keys
of each table are checked here, when a worker connects, so a broken table
shows as that server's error (``GET /api/v1/mcp``) instead of stopping the
gateway and every other server with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.agent.tools import NAME_PATTERN

STDIO, HTTP = "stdio", "http"
TRANSPORTS = (STDIO, HTTP)
COMMON_KEYS = {"transport", "enabled", "timeout_secs", "tool_prefix", "tags"}
TRANSPORT_KEYS = {STDIO: {"command", "args", "env", "cwd"}, HTTP: {"url", "headers"}}
# Registry names are <prefix>__<tool>; the prefix leaves room for a tool name.
PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
MAX_TIMEOUT_SECS = 3600


class ConfigProblem(ValueError):
    """A server table that cannot be used as it stands; the message names the key."""


@dataclass(frozen=True)
class ServerConfig:
    name: str
    transport: str
    enabled: bool = True
    timeout_secs: float | None = None  # None: [mcp] timeout_secs
    tool_prefix: str = ""
    tags: frozenset[str] = frozenset()
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict = field(default_factory=dict)
    cwd: str | None = None
    url: str = ""
    headers: dict = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return self.tool_prefix or self.name

    @property
    def source(self) -> str:
        """The registry's ``source`` of this server's tools."""
        return f"mcp:{self.name}"

    def registry_name(self, tool: str) -> str:
        return f"{self.prefix}__{tool}"


def tables(settings) -> dict[str, dict]:
    """Every configured server's raw table, by name."""
    return dict(settings.get("mcp.servers") or {})


def parse(name: str, table: dict) -> ServerConfig:
    """The server ``name`` as its table describes it; ConfigProblem when the table is not usable."""
    if not PREFIX_PATTERN.match(name):
        raise ConfigProblem(f"mcp.servers.{name}: a server name uses letters, digits, _ and -, at most 40")
    transport = table.get("transport")
    if transport not in TRANSPORTS:
        raise ConfigProblem(f"mcp.servers.{name}.transport: expected one of {', '.join(TRANSPORTS)}")
    unknown = set(table) - COMMON_KEYS - TRANSPORT_KEYS[transport]
    if unknown:
        raise ConfigProblem(f"mcp.servers.{name}: unknown key(s) for transport {transport}: "
                            f"{', '.join(sorted(unknown))}")
    where = f"mcp.servers.{name}"
    common = {
        "enabled": _typed(table, "enabled", bool, True, where),
        "timeout_secs": _timeout(table, where),
        "tool_prefix": _prefix(table, where),
        "tags": frozenset(_strings(table, "tags", where)),
    }
    if transport == STDIO:
        return ServerConfig(name, STDIO, **common, command=_required(table, "command", where),
                            args=tuple(_strings(table, "args", where)), env=_string_table(table, "env", where),
                            cwd=_typed(table, "cwd", str, None, where))
    return ServerConfig(name, HTTP, **common, url=_required(table, "url", where),
                        headers=_string_table(table, "headers", where))


def enabled(settings) -> dict[str, dict]:
    """The raw tables of the servers a worker should connect to (not ``enabled = false``)."""
    return {name: table for name, table in tables(settings).items()
            if not (isinstance(table, dict) and table.get("enabled") is False)}


def _typed(table: dict, key: str, kind: type, default, where: str):
    value = table.get(key, default)
    if value is not default and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
        raise ConfigProblem(f"{where}.{key}: expected {'true or false' if kind is bool else 'a string'}")
    return value


def _required(table: dict, key: str, where: str) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigProblem(f"{where}.{key}: required, a non-empty string")
    return value


def _timeout(table: dict, where: str) -> float | None:
    value = table.get("timeout_secs")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT_SECS:
        raise ConfigProblem(f"{where}.timeout_secs: expected a number of seconds, above 0 and at most "
                            f"{MAX_TIMEOUT_SECS}")
    return float(value)


def _prefix(table: dict, where: str) -> str:
    value = _typed(table, "tool_prefix", str, "", where)
    if value and not PREFIX_PATTERN.match(value):
        raise ConfigProblem(f"{where}.tool_prefix: letters, digits, _ and -, at most 40")
    return value


def _strings(table: dict, key: str, where: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigProblem(f"{where}.{key}: expected a list of strings")
    return value


def _string_table(table: dict, key: str, where: str) -> dict[str, str]:
    value = table.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(item, str) for item in value.values()):
        raise ConfigProblem(f"{where}.{key}: expected a table of strings")
    return dict(value)


def valid_tool_name(name: str) -> bool:
    return bool(NAME_PATTERN.match(name))
