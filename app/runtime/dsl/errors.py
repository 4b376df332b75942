"""DSL errors that point at the source: the position, the offending text and what would have fitted there.

Every way parsing can fail (a bad token, an unterminated string or comment, a
bad duration, too much nesting, oversized input) ends as a ``DslSyntaxError``,
so callers have one exception to turn into a 400.
"""

from __future__ import annotations

from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from app.runtime.dsl.grammar import KEYWORDS

# How terminals are named in messages. Operators collapse into one word: a list
# of twenty symbols after every expression would hide what actually fits.
_HUMAN = {
    "NAME": "identifier",
    "STRING": "string",
    "NUMBER": "number",
    "VAULT": "vault:// reference",
    "RULE_KIND": ["'allow'", "'deny'", "'require'", "'audit'"],
    "OR_OP": "operator",
    "AND_OP": "operator",
    "EQ_OP": "operator",
    "CMP_OP": "operator",
    "ADD_OP": "operator",
    "MUL_OP": "operator",
    "UNARY_OP": ["'!'", "'-'"],
    "ASSIGN_OP": "assignment",
    "LPAR": "'('",
    "LSQB": "'['",
    "LBRACE": "'{'",
    "$END": "end of input",
}

EXCERPT_CHARS = 40


class DslSyntaxError(ValueError):
    """The source is not a valid program; ``line`` and ``column`` are 1-based."""

    def __init__(self, message: str, line: int, column: int, text: str = "", expected=()):
        self.message = message
        self.line = line
        self.column = column
        self.text = text
        self.expected = list(expected)
        super().__init__(f"line {line}, column {column}: {message}")

    def details(self) -> dict:
        return {"line": self.line, "column": self.column, "text": self.text, "expected": list(self.expected)}


def end_position(source: str) -> tuple[int, int]:
    line = source.count("\n") + 1
    return line, len(source) - (source.rfind("\n") + 1) + 1


def excerpt(source: str, offset: int) -> str:
    """The source from ``offset`` to the end of its line, cut short."""
    end = source.find("\n", offset)
    end = len(source) if end < 0 else end
    return source[offset:min(end, offset + EXCERPT_CHARS)]


def expected_names(terminals, terminal_defs: dict) -> list[str]:
    names = set()
    for terminal in terminals:
        human = _HUMAN.get(terminal)
        if human is None:
            pattern = getattr(terminal_defs.get(terminal), "pattern", None)
            if terminal.lower() in KEYWORDS:
                human = f"'{terminal.lower()}'"
            elif pattern is not None and pattern.type == "str":
                human = f"'{pattern.value}'"
            else:
                human = terminal
        names.update(human if isinstance(human, list) else [human])
    return sorted(names)


def _accepted(error: UnexpectedInput, fallback) -> set:
    """What the parser could really take next.

    LALR merges states, so the raw expected set of the failing state also holds
    what other contexts sharing it would accept; trying each candidate on a copy
    of the parser removes those.
    """
    interactive = getattr(error, "interactive_parser", None)
    if interactive is None:
        return set(fallback or ())
    try:
        return interactive.accepts() or set(fallback or ())
    except Exception:  # a half-built program can fail in ways that say nothing about the input
        return set(fallback or ())


def from_lark(error: UnexpectedInput, source: str, terminal_defs: dict) -> DslSyntaxError:
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        token = error.token
        text = str(token)
        expected = expected_names(_accepted(error, error.expected), terminal_defs)
        return DslSyntaxError(f"unexpected {text!r}", token.line, token.column, text, expected)
    if isinstance(error, UnexpectedCharacters):
        char = source[error.pos_in_stream]
        expected = expected_names(_accepted(error, error.allowed), terminal_defs)
        return DslSyntaxError(f"unexpected character {char!r}", error.line, error.column, char, expected)
    line, column = end_position(source)
    if isinstance(error, (UnexpectedToken, UnexpectedEOF)):
        expected = expected_names(_accepted(error, getattr(error, "expected", ())), terminal_defs)
        return DslSyntaxError("unexpected end of input", line, column, "", expected)
    return DslSyntaxError(str(error), line, column)
