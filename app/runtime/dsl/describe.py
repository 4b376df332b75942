"""An agent in plain English for its system prompt, and trees back as DSL text for that description.

The model sees what the definition says it may do: capabilities, each policy
rule with its condition, the functions it defines and the settings of its
``with`` block. Conditions and values are written back as DSL expressions,
which reads naturally and loses nothing.
"""

from __future__ import annotations

import json

from app.runtime.dsl.model import AgentDef, Rule, type_text

_PRECEDENCE = {"||": 1, "&&": 2, "==": 3, "!=": 3, "in": 3, "<": 4, ">": 4, "<=": 4, ">=": 4,
               "+": 5, "-": 5, "*": 6, "/": 6, "%": 6}
_UNARY, _POSTFIX, _ATOM = 7, 8, 9


def render(node: dict | None) -> str:
    """DSL text for an expression tree (blocks are shown as ``{ ... }`` unless they hold only a result)."""
    return _render(node)[0] if node is not None else ""


def _render(node: dict) -> tuple[str, int]:
    kind = node["type"]
    if kind == "string":
        return json.dumps(node["value"], ensure_ascii=False), _ATOM
    if kind in ("number", "duration"):
        return node.get("text") or str(node["value"]), _ATOM
    if kind == "bool":
        return "true" if node["value"] else "false", _ATOM
    if kind == "name":
        return node["name"], _ATOM
    if kind == "wildcard":
        return "_", _ATOM
    if kind == "vault":
        return node["ref"], _ATOM
    if kind == "array":
        return "[" + ", ".join(render(i) for i in node["items"]) + "]", _ATOM
    if kind in ("record", "struct"):
        fields = ", ".join(f"{_key(f['key'])}: {render(f['value'])}" for f in node["fields"])
        prefix = node["name"] + " " if kind == "struct" else ""
        return prefix + ("{ " + fields + " }" if fields else "{}"), _ATOM
    if kind == "binary":
        level = _PRECEDENCE[node["op"]]
        left = _operand(node["left"], level)
        right = _operand(node["right"], level + 1)
        return f"{left} {node['op']} {right}", level
    if kind == "unary":
        space = " " if node["op"] == "not" else ""
        return f"{node['op']}{space}{_operand(node['operand'], _UNARY)}", _UNARY
    if kind == "member":
        return f"{_operand(node['object'], _POSTFIX)}.{node['field']}", _POSTFIX
    if kind == "index":
        return f"{_operand(node['object'], _POSTFIX)}[{render(node['index'])}]", _POSTFIX
    if kind == "call":
        return f"{_operand(node['callee'], _POSTFIX)}({', '.join(render(a) for a in node['args'])})", _POSTFIX
    if kind == "named_arg":
        return f"{node['name']} = {render(node['value'])}", 0
    if kind == "lambda":
        return f"{node['param']} => {render(node['body'])}", 0
    if kind == "if":
        otherwise = f" else {render(node['else'])}" if node.get("else") else ""
        return f"if {render(node['cond'])} {render(node['then'])}{otherwise}", 0
    if kind == "let_pattern":
        return f"let {render(node['pattern'])} = {render(node['value'])}", 0
    if kind == "pattern":
        args = "" if node["args"] is None else "(" + ", ".join(render(a) for a in node["args"]) + ")"
        return node["name"] + args, _ATOM
    if kind == "block":
        if not node["statements"] and node["result"] is not None:
            return "{ " + render(node["result"]) + " }", _ATOM
        return "{ ... }", _ATOM
    return "...", _ATOM


def _operand(node: dict, minimum: int) -> str:
    text, level = _render(node)
    return text if level >= minimum else f"({text})"


def _key(key: str) -> str:
    return key if key.isidentifier() else json.dumps(key, ensure_ascii=False)


_RULE_VERBS = {"allow": "Allowed", "deny": "Denied", "require": "Required", "audit": "Audited"}


def _rule_text(rule: Rule) -> str:
    expr = rule.expr
    if expr["type"] == "record":
        what = ", ".join(f"{_key(f['key'])} = {render(f['value'])}" for f in expr["fields"])
    elif rule.names() and expr["type"] in ("array", "string", "name"):
        what = ", ".join(rule.names())
    else:
        what = render(expr)
    when = f" when {render(rule.condition)}" if rule.condition is not None else ""
    return f"{_RULE_VERBS[rule.kind]}: {what}{when}."


def describe(agent: AgentDef) -> str:
    """A plain-English account of the agent for its system prompt."""
    lines = [f"You are the agent {agent.name}."]
    if agent.params:
        lines.append(f"You are given: {type_text(agent.params)}.")
    if agent.returns:
        lines.append(f"You produce a {agent.returns}.")
    if agent.capabilities:
        lines.append(f"Your capabilities: {', '.join(agent.capabilities)}.")
    else:
        lines.append("You have no declared capabilities.")
    for policy in agent.policies:
        lines.append(f"Policy {policy.name} (denials override permissions):")
        lines.extend(f"- {_rule_text(rule)}" for rule in policy.rules)
    if agent.functions:
        lines.append("Functions you define:")
        lines.extend(f"- {function.signature()}" for function in agent.functions)
    settings = [f"{block_attr['key']} = {render(block_attr['value'])}"
                for block in agent.with_blocks for block_attr in block.attributes]
    if settings:
        lines.append(f"Execution settings: {', '.join(settings)}.")
    return "\n".join(lines)
