"""What a parsed program holds, and how it is stored.

Statements and expressions are kept as plain JSON trees (dicts with a ``type``
key, documented in this package's ``README.md``), so a stored definition is exactly
``Program.to_dict()`` and ``Program.from_dict`` only rebuilds the few classes
around the trees. Convenience views (``with_options``, a rule's ``value``, a
block's ``properties``) are computed from the trees; ``to_dict`` writes them
out for readers and ``from_dict`` ignores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EMPTY_BLOCK = {"type": "block", "statements": [], "result": None}


def data(node: dict | None):
    """A tree as Python data: literals become values (durations seconds), names and vault references
    strings, arrays lists, records dicts, calls ``{"call": name, "args": [...]}``; anything else
    ``{"expr": tree}``."""
    if node is None:
        return None
    kind = node["type"]
    if kind in ("string", "number", "duration", "bool"):
        return node["value"]
    if kind == "name":
        return node["name"]
    if kind == "vault":
        return node["ref"]
    if kind == "array":
        return [data(item) for item in node["items"]]
    if kind == "record":
        return {f["key"]: data(f["value"]) for f in node["fields"]}
    if kind == "struct":
        return {"struct": node["name"], "fields": {f["key"]: data(f["value"]) for f in node["fields"]}}
    if kind == "call":
        return _call_data(node)
    if kind == "member" and dotted_name(node):
        return dotted_name(node)
    if kind == "unary" and node["op"] == "-" and node["operand"]["type"] in ("number", "duration"):
        return -node["operand"]["value"]
    return {"expr": node}


def _call_data(node: dict):
    name = dotted_name(node["callee"])
    if name is None:
        return {"expr": node}
    positional = [data(a) for a in node["args"] if a["type"] != "named_arg"]
    named = {a["name"]: data(a["value"]) for a in node["args"] if a["type"] == "named_arg"}
    return {"call": name, "args": positional, **({"kwargs": named} if named else {})}


def dotted_name(node: dict) -> str | None:
    """``a.b.c`` for a chain of names and field accesses, else None."""
    parts = []
    while node["type"] == "member":
        parts.append(node["field"])
        node = node["object"]
    if node["type"] != "name":
        return None
    parts.append(node["name"])
    return ".".join(reversed(parts))


def entries_data(entries: list[dict]) -> dict:
    return {e["key"]: data(e["value"]) for e in entries}


@dataclass
class Rule:
    kind: str  # allow | deny | require | audit
    expr: dict
    condition: dict | None = None
    line: int = 0

    @property
    def value(self):
        return data(self.expr)

    def names(self) -> list[str]:
        """The capability or tool names the rule lists: strings and names, and the names of calls."""
        value = self.value
        out = []
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict) and "call" in item:
                out.append(item["call"])
        return out

    def to_dict(self) -> dict:
        return {"kind": self.kind, "line": self.line, "expr": self.expr, "condition": self.condition,
                "value": self.value}

    @classmethod
    def from_dict(cls, d: dict) -> Rule:
        return cls(d["kind"], d["expr"], d.get("condition"), d.get("line", 0))


@dataclass
class PolicyDef:
    name: str
    rules: list[Rule] = field(default_factory=list)
    line: int = 0
    kind = "policy"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "line": self.line, "rules": [r.to_dict() for r in self.rules]}

    @classmethod
    def from_dict(cls, d: dict) -> PolicyDef:
        return cls(d["name"], [Rule.from_dict(r) for r in d["rules"]], d.get("line", 0))


def type_text(params: list[dict]) -> str:
    return ", ".join(f"{p['name']}: {p['type']}" for p in params)


@dataclass
class FunctionDef:
    name: str
    params: list[dict] = field(default_factory=list)
    returns: str | None = None
    body: dict = field(default_factory=lambda: dict(EMPTY_BLOCK))
    line: int = 0
    kind = "function"

    def signature(self) -> str:
        return f"{self.name}({type_text(self.params)})" + (f" -> {self.returns}" if self.returns else "")

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "line": self.line, "params": self.params,
                "returns": self.returns, "body": self.body}

    @classmethod
    def from_dict(cls, d: dict) -> FunctionDef:
        return cls(d["name"], d["params"], d.get("returns"), d["body"], d.get("line", 0))


@dataclass
class WithBlock:
    attributes: list[dict]  # [{"key", "value": tree}]
    body: dict
    line: int = 0

    def to_dict(self) -> dict:
        return {"line": self.line, "attributes": self.attributes, "body": self.body}

    @classmethod
    def from_dict(cls, d: dict) -> WithBlock:
        return cls(d["attributes"], d["body"], d.get("line", 0))


@dataclass
class AgentDef:
    name: str
    params: list[dict] = field(default_factory=list)
    returns: str | None = None
    capabilities: list[str] = field(default_factory=list)
    policies: list[PolicyDef] = field(default_factory=list)
    functions: list[FunctionDef] = field(default_factory=list)
    with_blocks: list[WithBlock] = field(default_factory=list)
    line: int = 0
    kind = "agent"

    @property
    def with_options(self) -> dict:
        """Every ``with`` attribute as Python data; a later block's value wins."""
        options = {}
        for block in self.with_blocks:
            options.update(entries_data(block.attributes))
        return options

    @property
    def body(self) -> dict:
        """The first ``with`` block's statements (an agent holds one in practice)."""
        return self.with_blocks[0].body if self.with_blocks else dict(EMPTY_BLOCK)

    def rules(self, kind: str | None = None) -> list[Rule]:
        return [r for p in self.policies for r in p.rules if kind is None or r.kind == kind]

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "name": self.name, "line": self.line, "params": self.params,
            "returns": self.returns, "capabilities": self.capabilities,
            "policies": [p.to_dict() for p in self.policies],
            "functions": [f.to_dict() for f in self.functions],
            "with_blocks": [w.to_dict() for w in self.with_blocks],
            "with_options": self.with_options,
        }

    @classmethod
    def from_dict(cls, d: dict) -> AgentDef:
        return cls(
            d["name"], d["params"], d.get("returns"), d["capabilities"],
            [PolicyDef.from_dict(p) for p in d["policies"]],
            [FunctionDef.from_dict(f) for f in d["functions"]],
            [WithBlock.from_dict(w) for w in d["with_blocks"]],
            d.get("line", 0),
        )


@dataclass
class TypeDef:
    name: str
    fields: list[dict] | None = None  # a struct type: [{"name", "type"}]
    alias: str | None = None  # or another type
    line: int = 0
    kind = "type"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "name": self.name, "line": self.line, "fields": self.fields, "alias": self.alias}

    @classmethod
    def from_dict(cls, d: dict) -> TypeDef:
        return cls(d["name"], d.get("fields"), d.get("alias"), d.get("line", 0))


@dataclass
class SettingsDef:
    """A ``metadata``, ``schedule``, ``channel``, ``memory`` or ``webhook`` item: key/value entries,
    named sub-blocks (``search``, ``filter``, ``data_classification``) and, for channels, policies."""

    kind: str
    name: str | None
    entries: list[dict] = field(default_factory=list)  # [{"key", "value": tree}]
    sections: dict[str, list[dict]] = field(default_factory=dict)
    policies: list[PolicyDef] = field(default_factory=list)
    line: int = 0

    @property
    def properties(self) -> dict:
        return entries_data(self.entries)

    def section(self, name: str) -> dict:
        return entries_data(self.sections.get(name, []))

    def to_dict(self) -> dict:
        return {
            "kind": self.kind, "name": self.name, "line": self.line, "entries": self.entries,
            "sections": self.sections, "policies": [p.to_dict() for p in self.policies],
            "properties": self.properties, "section_properties": {k: self.section(k) for k in self.sections},
        }

    @classmethod
    def from_dict(cls, d: dict) -> SettingsDef:
        policies = [PolicyDef.from_dict(p) for p in d.get("policies", [])]
        return cls(d["kind"], d.get("name"), d["entries"], d.get("sections", {}), policies, d.get("line", 0))


Item = AgentDef | PolicyDef | TypeDef | FunctionDef | SettingsDef

SETTINGS_KINDS = ("metadata", "schedule", "channel", "memory", "webhook")
_ITEM_CLASSES = {"agent": AgentDef, "policy": PolicyDef, "type": TypeDef, "function": FunctionDef}


@dataclass
class Program:
    items: list[Item] = field(default_factory=list)

    @property
    def metadata(self) -> dict:
        values = {}
        for item in self.of_kind("metadata"):
            values.update(item.properties)
        return values

    @property
    def agents(self) -> list[AgentDef]:
        return self.of_kind("agent")

    @property
    def policies(self) -> dict[str, PolicyDef]:
        """Top-level policies by name (an agent's own policies are in ``AgentDef.policies``)."""
        return {p.name: p for p in self.of_kind("policy")}

    def of_kind(self, kind: str) -> list:
        return [item for item in self.items if item.kind == kind]

    def agent(self, name: str | None = None) -> AgentDef:
        for agent in self.agents:
            if name is None or agent.name == name:
                return agent
        raise KeyError(name if name is not None else "the program defines no agent")

    def to_dict(self) -> dict:
        return {"items": [item.to_dict() for item in self.items], "metadata": self.metadata}

    @classmethod
    def from_dict(cls, d: dict) -> Program:
        items = []
        for item in d["items"]:
            kind = item["kind"]
            items.append(SettingsDef.from_dict(item) if kind in SETTINGS_KINDS else _ITEM_CLASSES[kind].from_dict(item))
        return cls(items)
