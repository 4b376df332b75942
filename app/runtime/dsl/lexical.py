"""Turning literal tokens into values: string escapes, numbers with ``_`` and durations.

The grammar lexes every run of digits and letters starting with a digit as one
token so that a misspelt unit (``5.minutez``, ``10ms``) is reported as a bad
duration instead of silently becoming a field access or two tokens.
"""

from __future__ import annotations

import re

# Seconds per unit. A month is 30 days and a year 365: durations bound runs and
# retention, where calendar precision does not matter.
UNITS = {
    ".seconds": 1.0,
    ".minutes": 60.0,
    ".hours": 3600.0,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "months": 2592000.0,
    "y": 31536000.0,
}

_NUMBER = re.compile(r"(\d(?:_?\d)*(?:\.\d+)?)(.*)", re.S)
_ESCAPE = re.compile(r"\\(u\{[0-9A-Fa-f]{1,6}\}|u[0-9A-Fa-f]{4}|[\s\S])")
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", '"': '"', "\\": "\\", "'": "'", "/": "/"}


def split_number(text: str) -> tuple[str, str]:
    """The numeric part and the unit (empty for a plain number)."""
    digits, unit = _NUMBER.fullmatch(text).groups()
    return digits, unit


def number_value(digits: str) -> int | float:
    plain = digits.replace("_", "")
    return float(plain) if "." in plain else int(plain)


def parse_duration(text: str) -> float | None:
    """Seconds in a duration such as ``30.seconds``, ``5m`` or ``1_000s``; None when it is not one."""
    match = _NUMBER.fullmatch(text.strip())
    if not match or match.group(2) not in UNITS:
        return None
    return float(number_value(match.group(1))) * UNITS[match.group(2)]


def _unescape(match: re.Match) -> str:
    code = match.group(1)
    if code.startswith("u") and len(code) > 1:
        point = int(code.strip("u{}"), 16)
        return chr(point) if point <= 0x10FFFF else match.group(0)
    # An unknown escape keeps its backslash: regular expressions in strings
    # (``"\d+"``) then mean what their author wrote.
    return _SIMPLE_ESCAPES.get(code, match.group(0))


def string_value(token_text: str) -> str:
    return _ESCAPE.sub(_unescape, token_text[1:-1])
