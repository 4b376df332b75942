"""Building the program while the LALR parser reduces, so no parse tree is ever walked recursively.

Every tree node records how deeply it nests; a node deeper than ``MAX_DEPTH``
stops the parse there. That bound is what keeps everything downstream (JSON
encoding, rendering, the runtime) clear of Python's recursion limit, whatever
the input: ten thousand nested parentheses, or a chain of ten thousand ``+``.
"""

from __future__ import annotations

from lark import Token, Transformer

from app.runtime.dsl.describe import render
from app.runtime.dsl.errors import DslSyntaxError
from app.runtime.dsl.lexical import UNITS, number_value, split_number, string_value
from app.runtime.dsl.model import AgentDef, FunctionDef, PolicyDef, Program, Rule, SettingsDef, TypeDef, WithBlock

MAX_DEPTH = 100


class Node(dict):
    """A tree node: a plain dict for its readers, plus its nesting depth and position for the parser."""

    __slots__ = ("depth", "line", "column")


def _children_depth(value) -> int:
    if isinstance(value, Node):
        return value.depth
    if isinstance(value, list):
        return max((_children_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return max((v.depth for v in value.values() if isinstance(v, Node)), default=0)
    return 0


def _position(children) -> tuple[int, int]:
    for child in children:
        if isinstance(child, Token) and child.line is not None:
            return child.line, child.column
        if isinstance(child, Node):
            return child.line, child.column
    return 0, 0


def _meaningful(children) -> list:
    """Children without the bracket tokens the grammar keeps only for their position."""
    return [c for c in children if not (isinstance(c, Token) and c.type in ("LPAR", "LSQB", "LBRACE"))]


class Builder(Transformer):
    """Callbacks named after grammar rules; each returns a ``Node`` or a model object."""

    def node(self, children, **fields) -> Node:
        node = Node(fields)
        node.depth = 1 + max((_children_depth(v) for v in fields.values()), default=0)
        node.line, node.column = _position(children)
        if node.depth > MAX_DEPTH:
            raise self.error(f"nesting is deeper than {MAX_DEPTH} levels", node.line, node.column)
        return node

    def error(self, message: str, line: int, column: int, expected=()) -> DslSyntaxError:
        # The builder is shared and never sees the source: ``parse`` fills in the excerpt.
        return DslSyntaxError(message, line, column, None, expected)

    # -- literals ---------------------------------------------------------

    def string(self, children):
        (token,) = children
        return self.node(children, type="string", value=string_value(str(token)))

    def number(self, children):
        (token,) = children
        digits, unit = split_number(str(token))
        if not unit:
            return self.node(children, type="number", value=number_value(digits), text=str(token))
        if unit not in UNITS:
            raise DslSyntaxError(
                f"bad duration {str(token)!r}: the unit must be one of {', '.join(UNITS)}",
                token.line, token.column, str(token), list(UNITS),
            )
        seconds = float(number_value(digits)) * UNITS[unit]
        return self.node(children, type="duration", value=seconds, text=str(token))

    def boolean(self, children):
        return self.node(children, type="bool", value=children[0].type == "TRUE")

    def name(self, children):
        (token,) = children
        if str(token) == "_":
            return self.node(children, type="wildcard")
        return self.node(children, type="name", name=str(token))

    def vault(self, children):
        return self.node(children, type="vault", ref=str(children[0]))

    # -- expressions ------------------------------------------------------

    def binary(self, children):
        left, op, right = children
        return self.node(children, type="binary", op=str(op), left=left, right=right)

    def unary(self, children):
        op, operand = children
        return self.node(children, type="unary", op=str(op), operand=operand)

    def member(self, children):
        obj, field = children
        return self.node(children, type="member", object=obj, field=str(field))

    def index(self, children):
        obj, _, index = children
        return self.node(children, type="index", object=obj, index=index)

    def call(self, children):
        callee, *args = _meaningful(children)
        return self.node(children, type="call", callee=callee, args=[a for a in args if a is not None])

    def named_arg(self, children):
        name, value = children
        return self.node(children, type="named_arg", name=str(name), value=value)

    def lambda_(self, children):
        param, body = children
        return self.node(children, type="lambda", param=str(param), body=body)

    def group(self, children):
        inner = children[1]
        deeper = Node(inner)
        deeper.line, deeper.column = children[0].line, children[0].column
        deeper.depth = inner.depth + 1
        if deeper.depth > MAX_DEPTH:
            raise self.error(f"nesting is deeper than {MAX_DEPTH} levels", deeper.line, deeper.column)
        return deeper

    def array(self, children):
        items = [c for c in _meaningful(children) if c is not None]
        return self.node(children, type="array", items=items)

    def field(self, children):
        key, value = children
        text = string_value(str(key)) if key.type == "STRING" else str(key)
        return {"key": text, "value": value}

    def record(self, children):
        return self.node(children, type="record", fields=_meaningful(children))

    def struct_lit(self, children):
        name, *fields = children
        return self.node(children, type="struct", name=str(name), fields=fields)

    def if_expr(self, children):
        _, cond, then, _else, otherwise = children
        return self.node(children, type="if", cond=cond, then=then, **{"else": otherwise})

    # -- statements -------------------------------------------------------

    def block(self, children):
        *statements, result = _meaningful(children)
        return self.node(children, type="block", statements=statements, result=result)

    def let_stmt(self, children):
        _, name, value_type, value = children
        return self.node(children, type="let", name=str(name), value_type=value_type, value=value)

    def if_stmt(self, children):
        _, cond, then, _else, otherwise = children
        return self.node(children, type="if", cond=cond, then=then, **{"else": otherwise})

    def let_cond(self, children):
        _, pattern, value = children
        return self.node(children, type="let_pattern", pattern=pattern, value=value)

    def pattern(self, children):
        name, lpar, *args = children
        if lpar is None:
            return self.node(children, type="wildcard") if str(name) == "_" else \
                self.node(children, type="pattern", name=str(name), args=None)
        return self.node(children, type="pattern", name=str(name), args=[a for a in args if a is not None])

    def for_stmt(self, children):
        _, var, _, iterable, body = children
        return self.node(children, type="for", var=str(var), iter=iterable, body=body)

    def match_stmt(self, children):
        _, subject, *arms = children
        return self.node(children, type="match", subject=subject, arms=arms)

    def arm(self, children):
        pattern, body = children
        return {"pattern": pattern, "body": body}

    def try_stmt(self, children):
        _, body, *catches = children
        return self.node(children, type="try", body=body, catches=catches)

    def catch(self, children):
        _, first, second, body = children
        error_type, var = (str(first), str(second)) if second is not None else (None, str(first))
        return {"error_type": error_type, "var": var, "body": body}

    def return_stmt(self, children):
        return self.node(children, type="return", value=children[1])

    def assign_stmt(self, children):
        target, op, value = children
        return self.node(children, type="assign", op=str(op), target=target, value=value)

    def expr_stmt(self, children):
        return self.node(children, type="expr", expr=children[0])

    # -- types and parameters ---------------------------------------------

    def type(self, children):
        name, *args = children
        args = [a for a in args if a is not None]
        return f"{name}<{', '.join(args)}>" if args else str(name)

    def param(self, children):
        name, type_ = children
        return {"name": str(name), "type": type_}

    def params(self, children):
        return list(children)

    def returns(self, children):
        return children[0]

    def struct_type(self, children):
        return list(children)

    # -- items ------------------------------------------------------------

    def start(self, children):
        return Program(list(children))

    def metadata(self, children):
        keyword, *entries = children
        return SettingsDef("metadata", None, entries, line=keyword.line)

    def meta_pair(self, children):
        key, value = children
        return {"key": str(key), "value": value}

    entry = meta_pair

    def loose_entry(self, children):
        return self.meta_pair(children)

    def with_attr(self, children):
        return self.meta_pair(children)

    def class_entry(self, children):
        key, value = children
        return {"key": str(key), "value": self.node(children[1:], type="name", name=str(value))}

    def search(self, children):
        return ("search", children[1:])

    def filter(self, children):
        return ("filter", children[1:])

    def classification(self, children):
        return ("data_classification", children[1:])

    def _settings(self, kind: str, children) -> SettingsDef:
        keyword, name, *parts = children
        item = SettingsDef(kind, str(name), line=keyword.line)
        for part in parts:
            if isinstance(part, PolicyDef):
                item.policies.append(part)
            elif isinstance(part, tuple):
                item.sections.setdefault(part[0], []).extend(part[1])
            else:
                item.entries.append(part)
        return item

    def schedule(self, children):
        return self._settings("schedule", children)

    def channel(self, children):
        return self._settings("channel", children)

    def memory(self, children):
        return self._settings("memory", children)

    def webhook(self, children):
        return self._settings("webhook", children)

    def policy(self, children):
        keyword, name, *rules = children
        return PolicyDef(str(name), rules, keyword.line)

    def rule(self, children):
        kind, expr, _, condition = children
        return Rule(str(kind), expr, condition, kind.line)

    def typedef(self, children):
        keyword, name, spec = children
        if isinstance(spec, list):
            return TypeDef(str(name), fields=spec, line=keyword.line)
        return TypeDef(str(name), alias=spec, line=keyword.line)

    def function(self, children):
        keyword, name, *rest = children
        *params, returns, body = rest
        return FunctionDef(str(name), params, returns, body, keyword.line)

    def with_block(self, children):
        keyword, *attributes, body = children
        return WithBlock(attributes, body, keyword.line)

    def capabilities(self, children):
        keyword, array = children
        names = []
        for item in array["items"]:
            if item["type"] == "name":
                names.append(item["name"])
            elif item["type"] == "string":
                names.append(item["value"])
            else:
                raise DslSyntaxError("a capability is a name or a string", item.line, item.column,
                                     render(item), ["identifier", "string"])
        return ("capabilities", names)

    def agent(self, children):
        keyword, name, params, returns, *parts = children
        agent = AgentDef(str(name), params or [], returns, line=keyword.line)
        for part in parts:
            if isinstance(part, tuple):
                agent.capabilities.extend(n for n in part[1] if n not in agent.capabilities)
            elif isinstance(part, PolicyDef):
                agent.policies.append(part)
            elif isinstance(part, FunctionDef):
                agent.functions.append(part)
            else:
                agent.with_blocks.append(part)
        return agent


# lark looks callbacks up by rule name; ``lambda`` is a Python keyword.
setattr(Builder, "lambda", Builder.lambda_)
