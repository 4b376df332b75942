"""An agent's definition: DSL source parsed off the hub, the SDK's body turned into DSL, and what a run reads of it.

Every agent is stored the same way, as DSL source and its parsed program:
an agent created with the SDK's body (no ``dsl``) gets source written from
that body, so it is parsed, stored, described and enforced exactly like one
written by hand. The parser is CPU-bound (about a second for the largest
accepted source), so it runs in a native thread and the worker keeps serving.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from decimal import Decimal

from app.core import offhub
from app.core.errors import BadRequest
from app.runtime.dsl import AgentDef, DslSyntaxError, PolicyDef, Program, describe, parse

PARSE_TIMEOUT_SECS = 30.0
NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]")
# The SDK's provider options: model and max_tokens reach the provider; all are kept with the agent.
SDK_OPTIONS = ("model", "temperature", "top_p", "max_tokens")
PROVIDER_OPTIONS = ("model", "max_tokens")


@dataclass(frozen=True)
class Definition:
    """One agent of a parsed program, with the program's shared parts."""

    program: Program
    agent: AgentDef

    @property
    def policies(self) -> list[PolicyDef]:
        """The agent's own policies, then the program's top-level ones: both bind it."""
        return [*self.agent.policies, *self.program.policies.values()]

    def instructions(self) -> str:
        """The system prompt: the agent described, then what the program's metadata says of it."""
        metadata = self.program.metadata
        parts = [describe(replace(self.agent, policies=self.policies))]
        if isinstance(metadata.get("description"), str) and metadata["description"]:
            parts.append(f"Your purpose: {metadata['description']}")
        if isinstance(metadata.get("system_prompt"), str) and metadata["system_prompt"]:
            parts.append(metadata["system_prompt"])
        return "\n\n".join(parts)


def _parse_or_error(source: str):
    # Returned rather than raised: the thread boundary keeps only the message of an exception.
    try:
        return parse(source)
    except DslSyntaxError as exc:
        return exc


def parse_source(source: str, max_bytes: int, field: str = "dsl") -> Program:
    """The program of ``source``; a 400 naming the line, column, text and what was expected otherwise."""
    size = len(source.encode())
    if size > max_bytes:
        raise BadRequest(f"The DSL source is {size} bytes; at most {max_bytes} are accepted ([runtime] max_dsl_bytes)",
                         details={field: [f"at most {max_bytes} bytes"]})
    try:
        parsed = offhub.in_thread(_parse_or_error, source, timeout=PARSE_TIMEOUT_SECS)
    except offhub.OffHubError as exc:
        raise BadRequest(f"The DSL source could not be parsed: {exc}", details={field: [str(exc)]}) from None
    if isinstance(parsed, DslSyntaxError):
        raise BadRequest(f"Invalid DSL: {parsed}", details=parsed.details())
    if not parsed.agents:
        raise BadRequest("The DSL source defines no agent", details={field: ["define an agent: agent NAME { ... }"]})
    return parsed


def choose(program: Program, name: str | None = None) -> Definition:
    """The agent ``name`` of the program (its first agent when None)."""
    try:
        return Definition(program, program.agent(name))
    except KeyError:
        names = [agent.name for agent in program.agents]
        raise BadRequest(f"The DSL source defines no agent named {name!r}",
                         details={"agents": names}) from None


def load(program_json: str, agent_name: str) -> Definition:
    program = Program.from_dict(json.loads(program_json))
    return Definition(program, program.agent(agent_name))


def dump(program: Program) -> str:
    return json.dumps(program.to_dict(), separators=(",", ":"), default=str)


def identifier(name: str) -> str:
    """A DSL identifier for a display name (``My agent`` -> ``My_agent``)."""
    text = NOT_IDENTIFIER.sub("_", name) or "agent"
    return f"agent_{text}" if text[0].isdigit() else text


def _string(value: str) -> str:
    # JSON's string escapes are the DSL's (\n, \t, \", \\, \uXXXX).
    return json.dumps(value, ensure_ascii=False)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # The DSL has no exponent notation: the same digits, written out (3e-05 -> 0.00003).
        return format(Decimal(repr(value)), "f")
    return _string(str(value))


def from_sdk(body: dict) -> str:
    """DSL source equivalent to the SDK's agent body: its tools become the capabilities, the rest metadata."""
    entries = {"description": body.get("description") or "", "system_prompt": body.get("system_prompt") or ""}
    entries.update({key: body[key] for key in SDK_OPTIONS if body.get(key) is not None})
    metadata = "\n".join(f"    {key} = {_value(value)}" for key, value in entries.items())
    tools = ", ".join(_string(tool) for tool in body.get("tools") or [])
    return (f"metadata {{\n{metadata}\n}}\n\n"
            f"agent {identifier(body['name'])} {{\n    capabilities = [{tools}]\n}}\n")


def provider_options(options: dict) -> dict:
    """The options an agent carries that the provider takes (the rest are kept, not applied)."""
    return {key: options[key] for key in PROVIDER_OPTIONS if options.get(key) is not None}
