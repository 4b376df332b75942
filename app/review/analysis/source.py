"""What the engine accepts as source, and which language it is written in.

Checked before any parsing, and cheap enough for the request path: a
submission the engine could never analyse is refused there with a clear
reason rather than failing later in a background job.
"""

from __future__ import annotations

import re

MAX_SOURCE_BYTES = 1024 * 1024
LANGUAGES = ("python", "javascript", "typescript")
# Language detection reads the start of the file: enough to decide, bounded for huge inputs.
DETECT_CHARS = 64 * 1024


class AnalysisInputError(ValueError):
    """Input that cannot be analysed; ``reason`` says why in words fit for an API answer."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def check_source(source, max_bytes: int = MAX_SOURCE_BYTES) -> str:
    """The source as text, or ``AnalysisInputError`` for binary, invalid UTF-8 or oversized input."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = _decode(bytes(source))
    if not isinstance(source, str):
        raise AnalysisInputError("source code must be text")
    if not source.strip():
        raise AnalysisInputError("source code is empty")
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise AnalysisInputError(f"source code is {size} bytes, over the limit of {max_bytes}")
    if "\x00" in source:
        raise AnalysisInputError("source code contains NUL bytes: binary files cannot be analysed")
    if _has_surrogates(source):
        raise AnalysisInputError("source code is not valid UTF-8")
    return source


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AnalysisInputError(f"source code is not valid UTF-8 (byte {exc.start})") from None


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def split_lines(text: str) -> list[str]:
    """Lines as both parsers number them: split at newlines only (a form feed is not a line break)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def check_language(language: str | None) -> str | None:
    if language is None:
        return None
    name = str(language).strip().lower()
    if name not in LANGUAGES:
        raise AnalysisInputError(f"unsupported language {language!r}: one of {', '.join(LANGUAGES)}")
    return name


# Each marker is a construct typical of one language; the highest total wins. Every quantifier
# is bounded so a pathological line costs linear time.
PYTHON_MARKERS = (
    (re.compile(r"^[ \t]{0,40}def \w{1,80}[ \t]?\([^\n]{0,200}\)[^\n:]{0,80}:[ \t]{0,20}$", re.M), 3),
    (re.compile(r"^(from [\w.]{1,80} )?import [\w., ]{1,200}$", re.M), 2),
    (re.compile(r"^[ \t]{0,40}class \w{1,80}(\([^\n]{0,200}\))?:[ \t]{0,20}$", re.M), 3),
    (re.compile(r"^[ \t]{0,40}(elif [^\n]{1,200}|else|try|except[^\n]{0,200}|finally):[ \t]{0,20}$", re.M), 2),
    (re.compile(r"\b(self|None|True|False)\b"), 1),
    (re.compile(r"^[ \t]{0,40}@\w", re.M), 1),
    (re.compile(r'^[ \t]{0,40}"""', re.M), 1),
)
SCRIPT_MARKERS = (
    (re.compile(r"\b(const|let|var)[ \t]{1,20}[\w${}\[\],]{1,80}[ \t]{0,20}="), 2),
    (re.compile(r"\bfunction\b[ \t]{0,20}\w{0,80}[ \t]{0,20}\("), 3),
    (re.compile(r"=>"), 2),
    (re.compile(r"\brequire[ \t]{0,20}\([ \t]{0,20}['\"]"), 3),
    (re.compile(r"^[ \t]{0,40}import [^\n]{1,200} from[ \t]{1,20}['\"]", re.M), 3),
    (re.compile(r"\b(module\.exports|exports\.\w|console\.\w)"), 3),
    (re.compile(r";[ \t]{0,20}$", re.M), 1),
    (re.compile(r"\b(null|undefined|this)\b"), 1),
)
TYPESCRIPT_MARKERS = (
    (re.compile(r"^[ \t]{0,40}(export[ \t]{1,20})?(interface|type|enum)[ \t]{1,20}\w", re.M), 4),
    (re.compile(r"\w\??[ \t]{0,20}:[ \t]{0,20}(string|number|boolean|unknown|any|void|never)\b"), 3),
    (re.compile(r"^[ \t]{0,40}import[ \t]{1,20}type\b", re.M), 4),
    (re.compile(r"\b(private|public|protected|readonly)[ \t]{1,20}\w"), 2),
    (re.compile(r"\bas[ \t]{1,20}(const|string|number|unknown|any)\b"), 3),
    (re.compile(r"<\w{1,80}(\[\])?>[ \t]{0,20}\("), 1),
)


def _score(markers, text: str) -> int:
    return sum(weight * min(len(pattern.findall(text)), 50) for pattern, weight in markers)


def detect_language(source: str) -> str:
    """``python``, ``javascript`` or ``typescript``, from the constructs the start of the file uses.

    TypeScript is JavaScript with type syntax: it wins when type markers are
    found in code that is not Python. A tie goes to Python.
    """
    text = source[:DETECT_CHARS]
    python, script = _score(PYTHON_MARKERS, text), _score(SCRIPT_MARKERS, text)
    types = _score(TYPESCRIPT_MARKERS, text)
    if python >= script + types:
        return "python"
    return "typescript" if types > 0 else "javascript"
