"""The Symbiont DSL as a lark LALR grammar, built once per process.

LALR keeps parsing linear and free of recursion, which is what bounds the cost
of hostile input. Two things the upstream tree-sitter grammar settles with GLR
and dynamic precedence are settled here by the grammar's shape instead:

- after ``if``/``for``/``match`` the head expression may not contain a struct
  literal (``Name { ... }``), so ``if ready { ... }`` opens the block (the rule
  Rust uses);
- a statement may not start with an ``if`` expression or a record, so a
  leading ``if`` is always a statement and a leading ``{`` never a record.

The expression ladder is therefore written three times (full, head of a
condition, start of a statement); it is generated below so the three cannot
drift apart.

Keywords are regular expressions with word boundaries and a higher priority
than identifiers. With lark's contextual lexer a keyword is only recognised
where the parser can accept it, so ``type``, ``agent``, ``filter`` and the
others stay valid identifiers everywhere else (``channel.type``, ``memory =
"ephemeral"``, ``results.filter(...)``).
"""

from __future__ import annotations

from lark import Lark

KEYWORDS = (
    "metadata", "agent", "policy", "type", "function", "schedule", "channel", "memory", "webhook",
    "capabilities", "with", "data_classification", "search",
    "filter", "let", "if", "else", "for", "in", "match", "try", "catch", "return", "not", "true", "false",
)

# Operator levels from loosest to tightest: (rule, operator terminals).
LEVELS = (
    ("or", "OR_OP"),
    ("and", "AND_OP"),
    ("eq", "EQ_OP | IN"),
    ("cmp", "CMP_OP"),
    ("add", "ADD_OP"),
    ("mul", "MUL_OP"),
)

# Expression variants: full, condition head, statement start. Only the leftmost
# operand of a statement is restricted; every operand of a condition is.
VARIANTS = {"": "", "_c": "_c", "_s": ""}

ATOMS = {
    "": ("literal", "array", "record", "group", "if_expr", "struct_lit", "name"),
    "_c": ("literal", "array", "record", "group", "if_expr", "name"),
    "_s": ("literal", "array", "group", "struct_lit", "name"),
}

STRUCTURE = r"""
start: _item*
_item: metadata | agent | policy | typedef | function | schedule | channel | memory | webhook

metadata: METADATA "{" meta_pair* "}"
meta_pair: NAME _sep meta_value ","?
?meta_value: plain | array | record
_sep: ":" | "="

agent: AGENT NAME [params] [returns] "{" _agent_item* "}"
params: "(" (param ","?)* ")"
param: NAME ":" type
returns: "->" type
_agent_item: capabilities | policy | function | with_block
capabilities: CAPABILITIES _sep array

policy: POLICY NAME "{" rule* "}"
rule: RULE_KIND ":" expr [IF expr]
RULE_KIND.2: /(allow|deny|require|audit)\b/

function: FUNCTION NAME "(" (param ","?)* ")" [returns] block
with_block: WITH (with_attr ","?)* block
with_attr: NAME "=" _setting_value

typedef: TYPE NAME "=" (struct_type | type)
struct_type: "{" (param ","?)* "}"
type: NAME ["<" type ("," type)* ">"]

schedule: SCHEDULE NAME "{" entry* "}"
channel: CHANNEL NAME "{" (entry | policy | classification)* "}"
classification: DATA_CLASSIFICATION "{" (class_entry ","?)* "}"
class_entry: NAME ":" NAME
entry: _entry_key _sep _setting_value ","?
_entry_key: NAME | POLICY | DATA_CLASSIFICATION
memory: MEMORY NAME "{" (loose_entry | search)* "}"
search: SEARCH "{" loose_entry* "}"
webhook: WEBHOOK NAME "{" (loose_entry | filter)* "}"
filter: FILTER "{" loose_entry* "}"
loose_entry: _loose_key _sep? _setting_value ","?
_loose_key: NAME | SEARCH | FILTER
_setting_value: plain | array

block: LBRACE _statement* [expr_s] "}"
_statement: let_stmt | if_stmt | for_stmt | match_stmt | try_stmt | return_stmt | assign_stmt | expr_stmt
let_stmt: LET NAME [":" type] "=" expr ";"
if_stmt: IF (expr_c | let_cond) block [ELSE (if_stmt | block)]
let_cond: LET pattern "=" expr_c
pattern: NAME [LPAR [pattern ("," pattern)* ","?] ")"]
for_stmt: FOR NAME IN expr_c block
match_stmt: MATCH expr_c "{" arm* "}"
arm: arm_pattern "=>" (block | expr_s) ","?
?arm_pattern: string | number | boolean | name
try_stmt: TRY block catch*
catch: CATCH "(" NAME [NAME] ")" block
return_stmt: RETURN [expr] ";"
assign_stmt: postfix_s ASSIGN_OP expr ";"
expr_stmt: expr_s ";"

lambda: NAME "=>" expr
if_expr: IF expr_c block ELSE (if_expr | block)
group: LPAR expr ")"
array: LSQB [expr ("," expr)* ","?] "]"
record: LBRACE (field ","?)* "}"
struct_lit: NAME "{" (field ","?)* "}"
field: (NAME | STRING) ":" expr
_args: arg ("," arg)* ","?
?arg: expr | named_arg
named_arg: NAME (":" | "=") expr

?plain: string | number | boolean | name | vault
?literal: string | number | boolean | vault
string: STRING
number: NUMBER
boolean: TRUE | FALSE
name: NAME
vault: VAULT

NAME: /[A-Za-z_][A-Za-z0-9_]*/
STRING: /"(?:\\[\s\S]|[^"\\])*("|\Z)/
NUMBER: /\d(?:_?\d)*(?:\.\d+)?(?:\.?[A-Za-z_][A-Za-z0-9_]*)?/
VAULT.3: /vault:\/\/[A-Za-z0-9_\-\/\.]+/
OR_OP: "||"
AND_OP: "&&"
EQ_OP: "==" | "!="
CMP_OP: "<=" | ">=" | "<" | ">"
ADD_OP: "+" | "-"
MUL_OP: "*" | "/" | "%"
UNARY_OP: "!" | "-"
ASSIGN_OP.1: /[-+*\/%]?=(?![=>])/
LPAR: "("
LSQB: "["
LBRACE: "{"

LINE_COMMENT.4: /(\/\/|#)[^\n]*/
BLOCK_COMMENT.4: /\/\*[\s\S]*?(\*\/|\Z)/
%ignore LINE_COMMENT
%ignore BLOCK_COMMENT
%ignore /\s+/
"""


def _expression_rules() -> str:
    lines = []
    below = [level for level, _ in LEVELS[1:]] + ["unary"]
    for suffix, right in VARIANTS.items():
        # A lambda's body runs to the end of the expression, so it sits above every operator.
        lines.append(f"?expr{suffix}: or{suffix}" if suffix == "_c" else f"?expr{suffix}: lambda | or{suffix}")
        for (level, ops), lower in zip(LEVELS, below, strict=True):
            lines.append(f"?{level}{suffix}: {level}{suffix} ({ops}) {lower}{right} -> binary | {lower}{suffix}")
        lines.append(f"?unary{suffix}: (UNARY_OP | NOT) unary{right} -> unary | postfix{suffix}")
        lines.append(
            f"?postfix{suffix}: postfix{suffix} \".\" NAME -> member\n"
            f"    | postfix{suffix} LPAR [_args] \")\" -> call\n"
            f"    | postfix{suffix} LSQB expr \"]\" -> index\n"
            f"    | atom{suffix}"
        )
        lines.append(f"?atom{suffix}: " + " | ".join(ATOMS[suffix]))
    return "\n".join(lines)


def _keyword_terminals() -> str:
    return "\n".join(f"{word.upper()}.2: /{word}\\b/" for word in KEYWORDS)


GRAMMAR = STRUCTURE + "\n" + _expression_rules() + "\n" + _keyword_terminals() + "\n"


def build(transformer, lexer_callbacks: dict) -> Lark:
    """A parser that hands every reduction to ``transformer`` (so no tree is built)."""
    return Lark(GRAMMAR, parser="lalr", lexer="contextual", transformer=transformer,
                lexer_callbacks=lexer_callbacks, maybe_placeholders=True)
