"""The tool registry: what the model may call during a turn.

A tool is a name, a description, a JSON schema for its arguments and a
callable that takes the arguments as a dict. Built-in tools register into a
registry (see ``builtin_tools``, which this module does not import); MCP
servers, WASM plugins and skills register theirs the same way, tagged with a
``source`` so that everything one of them provided can be withdrawn at once
when it disconnects or unloads. Capability ``tags`` let a ``ToolPolicy`` allow
or deny whole kinds of tools for a run without naming each one.

Calling a tool never raises: a tool that fails, or arguments that do not
match the schema, produce an error result whose text goes back to the model,
which can then correct itself or explain the problem to the user.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from app.agent.providers import ToolCall, ToolSpec

# Tool calls are steps of the agent loop; PRX logs them under its module.
log = logging.getLogger("agent::loop")

# What both the OpenAI and the Anthropic APIs accept as a tool name.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A tool's output goes back into the model's context: keep it bounded.
MAX_RESULT_CHARS = 16_000


class ToolError(Exception):
    """Raised by a tool for a failure the model should read as-is (no traceback text)."""


@dataclass(frozen=True, kw_only=True)
class ToolContext:
    """What a tool may know about the turn that called it.

    A turn belongs to a session or to a runtime execution, so either id may be
    missing; ``user_id`` is there when the conversation is with a known user.
    """

    settings: Any  # app.core.settings.Settings
    session_id: str | None = None
    execution_id: str | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class ToolResult:
    content: str
    is_error: bool = False
    duration_ms: float = 0.0


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict  # JSON schema of the arguments object
    handler: Callable[[dict, ToolContext], Any]  # returns text, or anything JSON-serialisable
    source: str = "builtin"  # "builtin", "mcp:<server>", "plugin:<name>", "skill:<name>"
    # Whether the tool is offered under the current settings (None: always).
    available: Callable[[Any], bool] | None = None
    # Capabilities a policy can allow or deny by, e.g. "memory", "network", "filesystem".
    tags: frozenset[str] = frozenset()

    def __post_init__(self):
        object.__setattr__(self, "tags", _names("tags", self.tags))

    def spec(self) -> ToolSpec:
        return ToolSpec(name=self.name, description=self.description, parameters=self.parameters)


@dataclass(frozen=True)
class ToolPolicy:
    """Which registered tools a run may offer and call.

    A tool is permitted unless its name or one of its tags is denied, and, when
    there is an allow list of names or of tags, only if it matches one of them.
    The default policy permits everything registered.
    """

    allow: frozenset[str] | None = None  # tool names; None: no restriction by name
    allow_tags: frozenset[str] | None = None
    deny: frozenset[str] = frozenset()
    deny_tags: frozenset[str] = frozenset()

    def __post_init__(self):
        # Accept any iterable of names (a list from a request or a DSL file); a bare string is a mistake.
        for name in ("allow", "allow_tags", "deny", "deny_tags"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _names(name, value))

    def permits(self, tool: Tool) -> bool:
        if tool.name in self.deny or tool.tags & self.deny_tags:
            return False
        if self.allow is None and self.allow_tags is None:
            return True
        return tool.name in (self.allow or ()) or bool(tool.tags & (self.allow_tags or frozenset()))


def _names(field_name: str, value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise TypeError(f"{field_name} takes a collection of names, not the string {value!r}")
    return frozenset(value)


ALL_TOOLS = ToolPolicy()


@dataclass
class ToolRegistry:
    _tools: dict[str, Tool] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, tool: Tool, replace: bool = False) -> None:
        """Add a tool. A name already taken is an error unless ``replace`` (a reloaded plugin)."""
        if not NAME_PATTERN.match(tool.name):
            raise ValueError(f"invalid tool name {tool.name!r}: use letters, digits, _ and -, at most 64")
        if tool.parameters.get("type") != "object":
            raise ValueError(f"tool {tool.name}: the arguments schema must describe an object")
        # A broken schema is the registrant's bug; refuse it now rather than at call time.
        jsonschema.validators.validator_for(tool.parameters).check_schema(tool.parameters)
        with self._lock:
            if tool.name in self._tools and not replace:
                raise ValueError(f"a tool named {tool.name!r} is already registered")
            self._tools[tool.name] = tool

    def unregister(self, name: str) -> None:
        with self._lock:
            self._tools.pop(name, None)

    def unregister_source(self, source: str) -> list[str]:
        """Withdraw every tool one provider of tools registered; returns their names."""
        with self._lock:
            names = [name for name, tool in self._tools.items() if tool.source == source]
            for name in names:
                del self._tools[name]
        return names

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def tools(self) -> list[Tool]:
        with self._lock:
            return sorted(self._tools.values(), key=lambda tool: tool.name)

    def offered(self, settings, policy: ToolPolicy = ALL_TOOLS) -> list[Tool]:
        """The tools a turn offers the model under these settings and this policy."""
        return [tool for tool in self.tools()
                if (tool.available is None or tool.available(settings)) and policy.permits(tool)]


def execute(tool: Tool | None, call: ToolCall, context: ToolContext) -> ToolResult:
    """Run one call; ``tool`` is None when the model named a tool it was not offered."""
    started = time.perf_counter()
    content, is_error = _run(tool, call, context)
    elapsed = round((time.perf_counter() - started) * 1000, 1)
    if len(content) > MAX_RESULT_CHARS:
        content = content[:MAX_RESULT_CHARS] + f"\n[truncated: the result had {len(content)} characters]"
    if is_error:
        log.warning("Tool call failed: %s (%.0fms): %s", call.name, elapsed, content[:300])
    else:
        log.info("Tool call completed: %s (%.0fms)", call.name, elapsed)
    return ToolResult(content=content, is_error=is_error, duration_ms=elapsed)


def _run(tool: Tool | None, call: ToolCall, context: ToolContext) -> tuple[str, bool]:
    if tool is None:
        return f"Error: there is no tool named {call.name!r}", True
    problem = argument_problem(tool, call.arguments)
    if problem:
        return f"Error: invalid arguments for {tool.name}: {problem}", True
    try:
        output = tool.handler(call.arguments, context)
    except ToolError as exc:
        return f"Error: {exc}", True
    except Exception as exc:
        # Logged with its traceback for operators; the model gets one line.
        log.warning("tool %s raised", tool.name, exc_info=True)
        return f"Error: {tool.name} failed: {type(exc).__name__}: {exc}", True
    return as_text(output), False


def argument_problem(tool: Tool, arguments: dict) -> str | None:
    """Why the arguments do not fit the tool's schema, or None when they do."""
    if "_raw" in arguments and len(arguments) == 1 and "_raw" not in tool.parameters.get("properties", {}):
        # The providers keep undecodable argument text under "_raw".
        return f"the arguments were not a JSON object: {arguments['_raw'][:200]}"
    validator = jsonschema.validators.validator_for(tool.parameters)(tool.parameters)
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


def as_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    return json.dumps(output, default=str, ensure_ascii=False)
