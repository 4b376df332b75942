"""The one way the API reads request text and the one way it writes JSON.

Python's ``json`` accepts what the rest of the stack can neither keep nor serve
back: lone surrogates (database drivers cannot encode them), ``NaN`` and
``Infinity`` (not JSON: ``JSON.parse`` refuses them), integers of thousands of
digits (``int()`` refuses past 4,300) and nesting deep enough to exhaust the
recursion limit. Such input is refused here, as 400 with the reason, before a
service sees it; and what the service writes (responses, stored JSON, event and
webhook payloads) goes through ``dumps``, which cannot write a ``NaN``.

The bounds (also listed in docs/operations.md):

- nesting: at most ``MAX_DEPTH`` (64) arrays and objects, checked before parsing;
- integers: at most ``MAX_INT`` (2**53 - 1) in magnitude, the range every JSON
  client reads exactly; other numbers must be finite (``1e400`` is infinite);
- strings and keys: valid Unicode without U+0000, which PostgreSQL text cannot hold;
- the URL (path and query string) likewise: valid UTF-8 once percent-decoded, no NUL.
"""

from __future__ import annotations

import json
import math
import re
from urllib.parse import unquote_to_bytes

from flask.json.provider import DefaultJSONProvider

from app.core.errors import BadRequest, too_large

MAX_DEPTH = 64
MAX_INT = 2**53 - 1
_MAX_INT_DIGITS = len(str(MAX_INT))

_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_EMPTY_CONTAINER = re.compile(r"\[\]|\{\}")
# Only text with one of these can decode to a string that must be refused.
_SUSPECT = re.compile(r"\\u(?:[dD][89a-fA-F]|0000)|[\ud800-\udfff]")


class InvalidJson(ValueError):
    """Why a JSON text was refused, in words fit for an error's details."""


def loads(data: bytes | str):
    """Parse a JSON text within the bounds above; ``InvalidJson`` says why not."""
    text = _decode(data)
    _check_depth(text)
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_int=_bounded_int, parse_float=_finite_float)
    except InvalidJson:
        raise
    except ValueError as exc:
        raise InvalidJson(str(exc)) from None
    if _SUSPECT.search(text):
        _check_strings(value)
    return value


def dumps(value, **kwargs) -> str:
    """``json.dumps`` that refuses NaN and infinities instead of writing non-JSON."""
    return json.dumps(value, allow_nan=False, **kwargs)


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON: responses through ``dumps``' rules, ``request.get_json`` through ``loads``."""

    def dumps(self, obj, **kwargs) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)

    def loads(self, s, **kwargs):
        return loads(s)

    def body(self, obj) -> bytes:
        """A JSON answer's body, as ``response`` writes it (the direct routes write it alone)."""
        if (self.compact is None and self._app.debug) or self.compact is False:
            return f"{self.dumps(obj, indent=2)}\n".encode()
        return f"{self.dumps(obj, separators=(',', ':'))}\n".encode()

    def response(self, *args, **kwargs):
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(self.body(obj), mimetype=self.mimetype)


def request_body(request) -> bytes:
    """The request body, refused with 413 when over the limit even without a Content-Length.

    Werkzeug stops reading a chunked body at ``max_content_length`` and returns
    what it read, which would then fail as truncated JSON; one byte more waiting
    in the server's stream tells the two apart.
    """
    data = request.get_data(cache=True)
    limit = request.max_content_length
    if limit is not None and request.content_length is None and len(data) >= limit:
        if request.environ["wsgi.input"].read(1):
            raise too_large(limit)
    return data


def check_url(environ) -> None:
    """Refuse a path or query string that is not valid UTF-8 or holds NUL (werkzeug would substitute U+FFFD)."""
    raw_path = environ.get("PATH_INFO", "")
    if not (raw_path.isascii() and "\x00" not in raw_path):  # the common case needs no decoding
        reason = _bytes_problem(raw_path.encode("latin-1", "replace"))
        if reason:
            raise BadRequest(f"The request path is {reason}", details={"path": [reason]})
    query = environ.get("QUERY_STRING", "").encode("latin-1")
    if not query or (query.isascii() and b"%" not in query and b"\x00" not in query):
        return
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        name_bytes = unquote_to_bytes(name.replace(b"+", b" "))
        reason = _bytes_problem(name_bytes) or _bytes_problem(unquote_to_bytes(value.replace(b"+", b" ")))
        if reason:
            shown = name_bytes.decode("utf-8", "backslashreplace").replace("\x00", "\\x00") or "query"
            raise BadRequest(f"Query parameter {shown!r} is {reason}", details={shown: [reason]})


def _bytes_problem(raw: bytes) -> str | None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "not valid UTF-8"
    return "not allowed to contain NUL (U+0000)" if b"\x00" in raw else None


def _decode(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson(f"not valid UTF-8 (byte {exc.start})") from None


def _check_depth(text: str) -> None:
    # Without strings and scalars a document is its brackets; each pass removes the
    # innermost containers, one level of nesting, so no recursion is ever needed.
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(MAX_DEPTH + 1):
        if not brackets:
            return
        reduced = _EMPTY_CONTAINER.sub("", brackets)
        if len(reduced) == len(brackets):
            raise InvalidJson("brackets do not balance")
        brackets = reduced
    raise InvalidJson(f"nested deeper than {MAX_DEPTH} arrays and objects")


def _refuse_constant(name: str):
    raise InvalidJson(f"numbers must be finite, not {name}")


def _bounded_int(text: str) -> int:
    # Checked on the digits first: int() of a 5,000-digit string raises (or takes time).
    if len(text.lstrip("-")) > _MAX_INT_DIGITS or abs(int(text)) > MAX_INT:
        raise InvalidJson(f"integers must be between -{MAX_INT} and {MAX_INT}, not {_clip(text)}")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJson(f"numbers must be finite, not {_clip(text)} (too large for a double)")
    return value


def _check_strings(value) -> None:
    stack = [(value, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            _check_text(node, where or "the body")
        elif isinstance(node, dict):
            for key, item in node.items():
                _check_text(key, f"a key of {where or 'the body'}")
                stack.append((item, f"{where}.{_printable(key)}" if where else _printable(key)))
        elif isinstance(node, list):
            stack.extend((item, f"{where}[{index}]") for index, item in enumerate(node))


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise InvalidJson(f"strings must not contain U+0000 (in {where})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidJson(f"invalid Unicode: a lone surrogate in {where}") from None


def _printable(key: str) -> str:
    # An error message must itself be encodable: show bad code points escaped.
    return _clip(key.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00"))


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
