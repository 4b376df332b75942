"""``parse``: source text in, a ``Program`` or a ``DslSyntaxError`` out, in time linear in the input."""

from __future__ import annotations

import re
import threading

from lark import Token
from lark.exceptions import UnexpectedInput

from app.runtime.dsl import grammar
from app.runtime.dsl.builder import Builder
from app.runtime.dsl.errors import DslSyntaxError, end_position, excerpt, from_lark
from app.runtime.dsl.model import Program

MAX_SOURCE_BYTES = 256 * 1024

_CLOSED_STRING = re.compile(r'"(?:\\[\s\S]|[^"\\])*"')


def _string_token(token: Token) -> Token:
    # The string terminal also matches up to the end of the input, so that a
    # missing quote is reported where the string starts, not where lexing stops.
    if not _CLOSED_STRING.fullmatch(token):
        raise DslSyntaxError("unterminated string", token.line, token.column, _first_line(token), ['\'"\''])
    return token


def _comment_token(token: Token) -> Token:
    if len(token) < 4 or not token.endswith("*/"):
        raise DslSyntaxError("unterminated comment", token.line, token.column, _first_line(token), ["'*/'"])
    return token


def _first_line(text: str) -> str:
    return excerpt(text, 0)


_LEXER_CALLBACKS = {"STRING": _string_token, "BLOCK_COMMENT": _comment_token}


_lock = threading.Lock()
_parser = None


def _shared_parser():
    """Built on first use (the LALR tables take a few hundred milliseconds), then shared: it is stateless."""
    global _parser
    if _parser is None:
        with _lock:
            if _parser is None:
                _parser = grammar.build(Builder(), _LEXER_CALLBACKS)
    return _parser


def _offset(source: str, line: int, column: int) -> int:
    offset = 0
    for _ in range(line - 1):
        offset = source.index("\n", offset) + 1
    return offset + column - 1


def _check_size(source: str) -> None:
    encoded = source.encode("utf-8", errors="surrogatepass")
    if len(encoded) > MAX_SOURCE_BYTES:
        inside = encoded[:MAX_SOURCE_BYTES].decode("utf-8", errors="ignore")
        line, column = end_position(inside)
        raise DslSyntaxError(
            f"the program is larger than {MAX_SOURCE_BYTES // 1024} KiB", line, column,
            excerpt(source, len(inside)),
        )


def parse(source: str) -> Program:
    """Parse a whole program; raises ``DslSyntaxError`` with the position of the first problem."""
    if not isinstance(source, str):
        raise DslSyntaxError("the program must be text", 1, 1)
    _check_size(source)
    lark = _shared_parser()
    try:
        return lark.parse(source)
    except UnexpectedInput as error:
        raise from_lark(error, source, {t.name: t for t in lark.terminals}) from None
    except DslSyntaxError as error:
        if error.text is None:
            error.text = excerpt(source, _offset(source, error.line, error.column))
        raise
