"""What a definition lets a run do: the tools it is offered, what must hold before it starts, what is audited.

- Tools: the agent's capabilities are its allow list, matched against tool
  names and capability tags; ``allow`` rules add to it, ``deny`` rules take
  away, and a denial always wins (``ToolPolicy``). An agent with no
  capabilities is offered no tool. ``with security = "high"`` (or a sandbox
  tier other than ``none``) also denies every tool tagged as reaching outside
  the service (network, filesystem, process).
- ``require`` rules are checked before the run: a record ``{key: value}``
  needs the execution's ``parameters`` to hold that value, a name needs a
  tool of that name or tag on offer. A requirement that cannot be checked
  before the run (an arbitrary expression) is not met: the run fails rather
  than go ahead unchecked.
- ``audit`` rules make the run write audit entries (under ``runtime::audit``),
  at the level their ``log_level`` names.

A rule's ``if`` condition is known before the run only when it is a literal
(``if true``); any other condition is taken the cautious way: a denial or a
requirement applies, a permission does not.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from app.agent.tools import Tool, ToolPolicy
from app.runtime.definition import Definition
from app.runtime.dsl import Rule, render

OUTSIDE_TAGS = frozenset({"network", "filesystem", "process"})
STRICT_SECURITY = ("high", "strict", "maximum")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
          "error": logging.ERROR}


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def condition(rule: Rule) -> bool | None:
    """True or False when the rule's condition is known before the run (none counts as true), else None."""
    if rule.condition is None:
        return True
    if rule.condition.get("type") == "bool":
        return bool(rule.condition["value"])
    return None


def _applies(rule: Rule, cautious: bool) -> bool:
    known = condition(rule)
    return cautious if known is None else known


def _rules(definition: Definition, kind: str) -> list[Rule]:
    return [rule for policy in definition.policies for rule in policy.rules if rule.kind == kind]


def strict(options: dict) -> bool:
    security = str(options.get("security") or "").lower()
    sandbox = str(options.get("sandbox") or "none").lower()
    return security in STRICT_SECURITY or sandbox not in ("none", "")


def tool_policy(definition: Definition) -> ToolPolicy:
    allowed = set(definition.agent.capabilities)
    for rule in _rules(definition, "allow"):
        if _applies(rule, cautious=False):
            allowed.update(rule.names())
    denied = set()
    for rule in _rules(definition, "deny"):
        if _applies(rule, cautious=True):
            denied.update(rule.names())
    denied_tags = set(denied) | (OUTSIDE_TAGS if strict(definition.agent.with_options) else set())
    return ToolPolicy(allow=allowed, allow_tags=allowed, deny=denied, deny_tags=denied_tags)


def unmet(definition: Definition, parameters: dict, offered: list[Tool]) -> list[str]:
    """Each ``require`` rule the run does not satisfy, said plainly; empty when it may start."""
    names = {tool.name for tool in offered} | {tag for tool in offered for tag in tool.tags}
    problems = []
    for rule in _rules(definition, "require"):
        if not _applies(rule, cautious=True):
            continue
        value = rule.value
        if isinstance(value, dict) and "expr" not in value and "call" not in value and "struct" not in value:
            for key, wanted in value.items():
                if key not in parameters or parameters[key] != wanted:
                    shown = "missing" if key not in parameters else _json(parameters[key])
                    problems.append(f"parameters.{key} must be {_json(wanted)} (it is {shown})")
        elif rule.names():
            problems.extend(f"a tool or capability {name!r} must be available to the run"
                            for name in rule.names() if name not in names)
        else:
            problems.append(f"the requirement {render(rule.expr)} cannot be checked before the run")
    return problems


@dataclass(frozen=True)
class Audit:
    """The audit rules of a definition: whether to audit, at which level, and whether results are included."""

    level: int | None
    include_results: bool = False

    @property
    def enabled(self) -> bool:
        return self.level is not None


def audit(definition: Definition) -> Audit:
    level, include = None, False
    for rule in _rules(definition, "audit"):
        if not _applies(rule, cautious=True):
            continue
        value = rule.value if isinstance(rule.value, dict) else {}
        named = LEVELS.get(str(value.get("log_level", "info")).lower(), logging.INFO)
        level = named if level is None else min(level, named)
        include = include or bool(value.get("include_findings") or value.get("include_results"))
    return Audit(level, include)
