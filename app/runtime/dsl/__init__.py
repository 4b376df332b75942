"""The Symbiont agent DSL: a parser for its programs and the model of what they define.

Runtime agents are written in this language; the runtime stores the parsed
form (``Program.to_dict``) and describes an agent to its model with
``describe``. The language is the one the upstream tree-sitter grammar
defines; ``README.md`` beside this file lists what is accepted and how it is stored.
"""

from app.runtime.dsl.describe import describe, render
from app.runtime.dsl.errors import DslSyntaxError
from app.runtime.dsl.lexical import parse_duration
from app.runtime.dsl.model import (
    AgentDef,
    FunctionDef,
    Item,
    PolicyDef,
    Program,
    Rule,
    SettingsDef,
    TypeDef,
    WithBlock,
    data,
)
from app.runtime.dsl.parser import MAX_SOURCE_BYTES, parse

__all__ = [
    "AgentDef", "DslSyntaxError", "FunctionDef", "Item", "MAX_SOURCE_BYTES", "PolicyDef", "Program", "Rule",
    "SettingsDef", "TypeDef", "WithBlock", "data", "describe", "parse", "parse_duration", "render",
]
