"""Tools every agent has: the current time, and a search of its memory.

This module also builds the process-wide registry: it imports ``tools`` and
registers into it, never the other way round, so ``tools`` stays free of any
particular tool.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.agent.memory import Scope, open_memory
from app.agent.tools import Tool, ToolContext, ToolError, ToolRegistry
from app.core.db import connection, iso

MEMORY_SEARCH_LIMIT = 20


def current_time(arguments: dict, context: ToolContext) -> dict:
    now = datetime.now(UTC)
    name = arguments.get("timezone") or "UTC"
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"unknown time zone {name!r}; use an IANA name such as Europe/Paris") from None
    local = now.astimezone(zone)
    return {"utc": iso(now.replace(tzinfo=None)), "timezone": name, "local": local.isoformat(timespec="seconds"),
            "weekday": local.strftime("%A")}


def memory_search(arguments: dict, context: ToolContext) -> dict:
    memory = open_memory(context.settings.get("memory.backend"))
    if memory.backend == "none":
        raise ToolError("memory is turned off on this gateway ([memory] backend = \"none\")")
    limit = arguments.get("limit") or context.settings.get("memory.top_k") or 5
    # A run with neither a user nor a session (an execution on its own) has no memories to search.
    scope = Scope(session_id=context.session_id, user_id=context.user_id)
    # Turns hold no connection while they wait on the model; take one just for the search.
    with connection():
        found = memory.recall(arguments["query"], scope, limit)
    return {"results": [{"content": item.content, "saved_at": iso(item.created_at)} for item in found]}


BUILTIN_TOOLS = (
    Tool(
        name="current_time",
        description="The current date and time, in UTC and in a given IANA time zone.",
        parameters={
            "type": "object",
            "properties": {
                "timezone": {"type": "string", "description": "IANA time zone, e.g. Asia/Tokyo (default UTC)",
                             "maxLength": 64},
            },
            "additionalProperties": False,
        },
        handler=current_time,
        tags=frozenset({"time"}),
    ),
    Tool(
        name="memory_search",
        description="Search what was said in earlier conversations with this user. "
                    "Returns the most relevant saved exchanges, best first.",
        parameters={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": 1000,
                          "description": "Words to look for"},
                "limit": {"type": "integer", "minimum": 1, "maximum": MEMORY_SEARCH_LIMIT},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        handler=memory_search,
        available=lambda settings: settings.get("memory.backend") != "none",
        tags=frozenset({"memory"}),
    ),
)


def install(registry: ToolRegistry) -> None:
    for tool in BUILTIN_TOOLS:
        registry.register(tool)


_default: ToolRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> ToolRegistry:
    """The process-wide registry, with the built-in tools in it."""
    global _default
    with _default_lock:
        if _default is None:
            registry = ToolRegistry()
            install(registry)
            _default = registry
    return _default
