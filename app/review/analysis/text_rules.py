"""Rules that read the source as text, whatever its language: hard-coded secrets and encoded payloads.

Known token formats are matched exactly; anything else counts as a secret
only when a string of high entropy is assigned to a secret-like name, which
keeps identifiers, hashes and placeholders out of the findings. Every
pattern is bounded, and a secret never appears whole in a finding.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter

from app.review.analysis.findings import Finding, snippet_of
from app.review.analysis.source import split_lines

ROTATE = "Remove the secret from the code, revoke it, and read it from the tool's configuration at run time."

# (rule id, what it is, severity, pattern whose group 1 is the secret)
TOKENS = (
    ("secret-aws-access-key", "an AWS access key id", "critical",
     re.compile(r"\b((?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16})\b")),
    ("secret-github-token", "a GitHub token", "critical",
     re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{36,251})\b")),
    ("secret-github-token", "a GitHub fine-grained token", "critical",
     re.compile(r"\b(github_pat_[A-Za-z0-9_]{22,250})\b")),
    ("secret-private-key", "a private key", "critical",
     re.compile(r"(-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----)")),
    ("secret-slack-token", "a Slack token", "high",
     re.compile(r"\b(xox[abposr]-[0-9A-Za-z-]{10,250})\b")),
    ("secret-slack-webhook", "a Slack webhook URL", "high",
     re.compile(r"(https://hooks\.slack\.com/services/T[0-9A-Z]{8,12}/B[0-9A-Z]{8,12}/[0-9A-Za-z]{20,32})")),
    ("secret-google-api-key", "a Google API key", "high",
     re.compile(r"\b(AIza[0-9A-Za-z_-]{35})(?![0-9A-Za-z_-])")),
    ("secret-stripe-key", "a Stripe live secret key", "critical",
     re.compile(r"\b([sr]k_live_[0-9A-Za-z]{20,99})\b")),
)

# Every known token starts with one of these: lines without them are not scanned for tokens.
TOKEN_HINT = re.compile(r"AKIA|ASIA|ABIA|ACCA|gh[pousr]_|github_pat_|PRIVATE KEY|xox[abposr]-|hooks\.slack\.com|"
                        r"AIza|[sr]k_live_")
NEWLINE = re.compile("\n")
MAX_HINTS = 10_000
SECRET_NAME = re.compile(
    r"(?i)(secret|token|passw(?:or)?d|passwd|api_?key|apikey|access_?key|private_?key|auth_?key|"
    r"credential|signing_?key|client_?secret)"
)
# Names that mention a secret without holding one: where it is, what it is called.
NOT_A_SECRET_NAME = re.compile(r"(?i)(url|uri|path|file|name|_id|ids|env|var|header|field|type|len|length|"
                               r"count|limit|prefix|pattern|regex|format|label|param|key_?id|endpoint|kind)$")
ASSIGNED = re.compile(
    r"([A-Za-z_$][A-Za-z0-9_$]{0,60})[\"']?[ \t]{0,10}(?::=|=>|=|:)[ \t]{0,10}[rbuRBU]{0,2}"
    r"([\"'`])([^\"'`\s]{16,300})\2"
)
PLACEHOLDER = re.compile(r"(?i)(example|sample|dummy|placeholder|changeme|change_me|your|xxxx|test|fake|redacted|"
                         r"\.\.\.|[<>{}$%*\[\]()])")
MIN_ENTROPY = 3.5
# Maximal runs, then a length test: a bounded repeat would rescan each short run from every offset.
BASE64_RUN = re.compile(r"[A-Za-z0-9+/]+={0,2}")
MIN_BLOB_CHARS = 200
BLOB_ENTROPY = 4.5
# Windows around a secret-like name, so a 1 MiB line costs no more than its keyword hits.
WINDOW_BEFORE, WINDOW_AFTER = 70, 340
MAX_HITS_PER_LINE = 50


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    if not text:
        return 0.0
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in Counter(text).values())


def mask(line: str, secret: str) -> str:
    shown = secret[:4] + "…[redacted]"
    return snippet_of(line.replace(secret, shown))


def scan(text: str) -> list[Finding]:
    """Findings over the whole text; each scanner visits only the lines its cheap first pass points at."""
    lines = split_lines(text)
    starts = [0, *(match.end() for match in NEWLINE.finditer(text))]
    found: list[Finding] = []
    for number in _lines_with(TOKEN_HINT, text, starts):
        found += _known_tokens(lines[number - 1], number)
    for number in _lines_with(SECRET_NAME, text, starts):
        found += _assigned_secrets(lines[number - 1], number)
    for number, line in enumerate(lines, start=1):
        if len(line) >= MIN_BLOB_CHARS:
            found += _encoded_blobs(line, number)
    return found


def _lines_with(pattern: re.Pattern, text: str, starts: list[int]) -> list[int]:
    numbers = {bisect.bisect_right(starts, match.start()) for match in _capped(pattern.finditer(text), MAX_HINTS)}
    return sorted(numbers)


def _known_tokens(line: str, number: int) -> list[Finding]:
    found = []
    for rule_id, what, severity, pattern in TOKENS:
        for match in _capped(pattern.finditer(line)):
            secret = match.group(1)
            if "EXAMPLE" in secret.upper():
                continue
            found.append(Finding(
                rule_id=rule_id, severity=severity, category="hardcoded_secret",
                title="Hard-coded credential", description=f"The source contains {what}.",
                recommendation=ROTATE, line=number, cwe="CWE-798", snippet=mask(line, secret), confidence=0.95,
                secret=secret,
            ))
    return found


def _assigned_secrets(line: str, number: int) -> list[Finding]:
    found, seen = [], set()
    for hit in _capped(SECRET_NAME.finditer(line)):
        start = max(0, hit.start() - WINDOW_BEFORE)
        for match in ASSIGNED.finditer(line, start, min(len(line), hit.end() + WINDOW_AFTER)):
            name, value = match.group(1), match.group(3)
            if value in seen or not _looks_secret(name, value):
                continue
            seen.add(value)
            found.append(Finding(
                rule_id="secret-high-entropy", severity="high", category="hardcoded_secret",
                title="Hard-coded secret",
                description=f"A random-looking value is assigned to {name!r}, a name that holds a secret.",
                recommendation=ROTATE, line=number, cwe="CWE-798", snippet=mask(line, value), confidence=0.7,
                secret=value,
            ))
    return found


def _looks_secret(name: str, value: str) -> bool:
    if not SECRET_NAME.search(name) or NOT_A_SECRET_NAME.search(name):
        return False
    if PLACEHOLDER.search(value) or value.startswith(("http://", "https://", "/")):
        return False
    classes = sum(1 for test in (str.islower, str.isupper, str.isdigit) if any(test(c) for c in value))
    return classes >= 2 and entropy(value) >= MIN_ENTROPY


def _encoded_blobs(line: str, number: int) -> list[Finding]:
    found = []
    long_runs = (match for match in BASE64_RUN.finditer(line) if match.end() - match.start() >= MIN_BLOB_CHARS)
    for match in _capped(long_runs, 5):
        blob = match.group(0)
        if entropy(blob[:4096]) < BLOB_ENTROPY or "base64," in line[max(0, match.start() - 12):match.start()]:
            continue
        found.append(Finding(
            rule_id="encoded-payload", severity="low", category="obfuscation",
            title="Large encoded payload",
            description=f"A {len(blob)}-character base64 string is embedded in the code; it cannot be reviewed "
                        "as written.",
            recommendation="Ship data as a reviewed file, or decode it here so the review sees what it is.",
            line=number, cwe="CWE-506", snippet=snippet_of(blob), confidence=0.5,
        ))
    return found


def _capped(matches, limit: int = MAX_HITS_PER_LINE):
    for count, match in enumerate(matches):
        if count >= limit:
            return
        yield match
