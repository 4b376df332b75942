"""An MCP server's tools as registry tools: names, schemas, tags, and what a call returns to the model.

A server's tool ``read_file`` becomes ``<server>__read_file`` (or
``<tool_prefix>__read_file``) with the server's own input schema, tagged
``mcp``, ``mcp:<server>`` (its ``source``), the table's ``tags`` and what the
tool's annotations say (``read_only``, ``destructive``, ``open_world``), so a
runtime policy can allow or deny them like any other tool. A call waits at
most the server's ``timeout_secs``; a server that does not answer costs the
model one error result, not its turn.
"""

from __future__ import annotations

import json
import logging

from app.agent.tools import Tool, ToolError, ToolRegistry
from app.mcp.client import Disconnected, McpError, RemoteError, Session, TimedOut
from app.mcp.config import ServerConfig, valid_tool_name

ANNOTATION_TAGS = {"readOnlyHint": "read_only", "destructiveHint": "destructive", "openWorldHint": "open_world"}
MAX_DESCRIPTION_CHARS = 2000


def install(registry: ToolRegistry, config: ServerConfig, session: Session, listed: list[dict]) -> list[str]:
    """Register the server's tools in place of any earlier ones; returns the server's names of those taken."""
    registry.unregister_source(config.source)
    log = logging.getLogger(f"mcp::{config.name}")
    taken = []
    for entry in listed:
        name = entry.get("name")
        if not isinstance(name, str) or not valid_tool_name(config.registry_name(name)):
            log.warning("skipped a tool whose name cannot be a tool name here: %r", name)
            continue
        try:
            registry.register(_tool(config, session, entry))
        except ValueError as exc:
            log.warning("skipped tool %s: %s", name, exc)
            continue
        taken.append(name)
    return taken


def withdraw(registry: ToolRegistry, config: ServerConfig) -> None:
    registry.unregister_source(config.source)


def _tool(config: ServerConfig, session: Session, entry: dict) -> Tool:
    name = entry["name"]
    schema = entry.get("inputSchema")
    if not isinstance(schema, dict):
        schema = {"type": "object"}
    description = entry.get("description") or entry.get("title") or f"{name}, from the MCP server {config.name}"
    return Tool(
        name=config.registry_name(name),
        description=str(description)[:MAX_DESCRIPTION_CHARS],
        parameters=schema,
        handler=_caller(config, session, name),
        source=config.source,
        tags=frozenset({"mcp", config.source, *config.tags, *_annotation_tags(entry.get("annotations"))}),
    )


def _annotation_tags(annotations) -> set[str]:
    if not isinstance(annotations, dict):
        return set()
    return {tag for hint, tag in ANNOTATION_TAGS.items() if annotations.get(hint) is True}


def _caller(config: ServerConfig, session: Session, name: str):
    def call(arguments: dict, context) -> str:
        timeout = config.timeout_secs or context.settings.get("mcp.timeout_secs")
        try:
            result = session.call_tool(name, arguments, timeout)
        except TimedOut:
            raise ToolError(f"the MCP server {config.name} did not answer within {timeout:g}s") from None
        except Disconnected as exc:
            raise ToolError(f"the MCP server {config.name} is not connected: {exc}") from None
        except RemoteError as exc:
            raise ToolError(f"the MCP server {config.name} refused the call: {exc}") from None
        except McpError as exc:
            raise ToolError(f"the MCP server {config.name} failed: {exc}") from None
        text = result_text(result)
        if result.get("isError") is True:
            raise ToolError(text or f"{name} reported an error without a message")
        return text

    return call


def result_text(result: dict) -> str:
    """What the model reads of a ``tools/call`` result: its text, or else its structured content as JSON.

    The specification asks a server that returns structured content to return it serialized as text
    too, so the text alone is complete whenever there is text.
    """
    parts = [_content_text(item) for item in result.get("content") or [] if isinstance(item, dict)]
    text = "\n".join(part for part in parts if part)
    structured = result.get("structuredContent")
    if not text and structured is not None:
        return json.dumps(structured, ensure_ascii=False)
    return text


def _content_text(item: dict) -> str:
    kind = item.get("type")
    if kind == "text":
        return str(item.get("text") or "")
    if kind == "resource":
        resource = item.get("resource") if isinstance(item.get("resource"), dict) else {}
        return str(resource.get("text") or f"[resource {resource.get('uri', '')}]")
    if kind == "resource_link":
        return f"[resource link {item.get('uri', '')}]"
    return f"[{kind} {item.get('mimeType', '')}]".replace(" ]", "]")
