"""Findings as every rule reports them, and the risk score computed from them.

One shape for code and schema findings keeps the review workflow, the API
and the knowledge-base queries indifferent to which analyser produced them.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

SEVERITIES = ("critical", "high", "medium", "low", "info")
RANK = {name: len(SEVERITIES) - index for index, name in enumerate(SEVERITIES)}

# Chance that one finding of this severity is a real problem at full confidence
# (docs/review.md, "Risk score").
WEIGHTS = {"critical": 0.70, "high": 0.40, "medium": 0.12, "low": 0.03, "info": 0.0}

MAX_SNIPPET_CHARS = 200
MAX_FINDINGS = 500
MAX_RECOMMENDATIONS = 10
# Finding ids are stable for the same input, so a re-analysis names the same findings alike.
ID_NAMESPACE = uuid.UUID("6f1d2a4e-3c1b-4f7e-9a55-2b8f0c6d9e10")


@dataclass
class Finding:
    rule_id: str
    severity: str
    category: str
    title: str
    description: str
    recommendation: str
    line: int | None = None
    cwe: str | None = None
    snippet: str = ""
    confidence: float = 0.8
    location: str | None = None  # where there is no line (a schema's field path)
    capability: str | None = None  # what the code needs (network, process...), for the permission check
    secret: str | None = None  # a secret this finding found: masked wherever another finding quotes it

    def as_dict(self, ordinal: int) -> dict:
        location = self.location or (f"line {self.line}" if self.line is not None else "")
        return {
            "finding_id": str(uuid.uuid5(ID_NAMESPACE, f"{self.rule_id}|{location}|{self.snippet}|{ordinal}")),
            "rule_id": self.rule_id,
            "severity": self.severity,
            "category": self.category,
            "title": self.title,
            "description": self.description,
            "location": location,
            "line": self.line,
            "recommendation": self.recommendation,
            "cwe": self.cwe,
            "snippet": self.snippet,
            "confidence": round(min(max(self.confidence, 0.0), 1.0), 2),
        }


def snippet_of(text: str) -> str:
    """One line of source, trimmed, bounded: a 1 MiB line must not become a 1 MiB finding."""
    text = " ".join(text.strip().split()) if len(text) <= 4 * MAX_SNIPPET_CHARS else text.strip()
    if len(text) > MAX_SNIPPET_CHARS:
        return text[: MAX_SNIPPET_CHARS - 3] + "..."
    return text


def risk_score(findings) -> int:
    """100 × the chance that at least one finding is real: 1 − Π(1 − weight(severity) × confidence).

    Rises with every finding, more with severe and confident ones, never past 100.
    Accepts ``Finding`` objects or their dicts.
    """
    clear = 0.0
    for finding in findings:
        severity, confidence = _severity_and_confidence(finding)
        clear += math.log1p(-min(WEIGHTS.get(severity, 0.0) * confidence, 0.999999))
    return int(round(100 * (1 - math.exp(clear))))


def _severity_and_confidence(finding) -> tuple[str, float]:
    if isinstance(finding, dict):
        return finding.get("severity", "info"), float(finding.get("confidence", 1.0))
    return finding.severity, finding.confidence


def merge(findings: list[Finding]) -> list[Finding]:
    """One finding per line and weakness: where two rules saw the same thing, the more severe one stays.

    Equal severities keep the first reported (our own rules run before
    bandit's, and their recommendations are written for tools).
    """
    kept: dict[tuple, Finding] = {}
    for finding in findings:
        # A schema finding has a field path and no line: there each rule speaks for itself.
        key = (finding.line, finding.cwe or finding.category) if finding.line is not None else (
            finding.location, finding.rule_id)
        current = kept.get(key)
        if current is None or RANK[finding.severity] > RANK[current.severity]:
            kept[key] = finding
    return sorted(kept.values(), key=lambda f: (-RANK[f.severity], f.line or 0, f.rule_id))


def recommendations(findings: list[Finding]) -> list[str]:
    """Distinct recommendations, most severe first."""
    seen: dict[str, None] = {}
    for finding in findings:
        if finding.severity != "info":
            seen.setdefault(finding.recommendation, None)
    return list(seen)[:MAX_RECOMMENDATIONS]


def counts(findings: list[Finding]) -> dict[str, int]:
    tally = dict.fromkeys(SEVERITIES, 0)
    for finding in findings:
        tally[finding.severity] += 1
    return tally


def mask_secrets(findings: list[Finding]) -> None:
    """Secrets one rule found stay hidden in what any other rule quotes (bandit's descriptions, snippets)."""
    secrets = {finding.secret for finding in findings if finding.secret}
    for finding in findings:
        for secret in secrets:
            hidden = secret[:4] + "…[redacted]"
            finding.snippet = finding.snippet.replace(secret, hidden)
            finding.title = finding.title.replace(secret, hidden)
            finding.description = finding.description.replace(secret, hidden)


def report(language: str | None, findings: list[Finding], stats: dict) -> dict:
    """The engine's answer: merged findings, bounded in number, with their score and recommendations."""
    mask_secrets(findings)
    merged = merge(findings)
    truncated = len(merged) > MAX_FINDINGS
    # The score counts every finding; the answer lists the most severe ones.
    score = risk_score(merged)
    shown = merged[:MAX_FINDINGS]
    return {
        "language": language,
        "findings": [finding.as_dict(index) for index, finding in enumerate(shown)],
        "risk_score": score,
        "recommendations": recommendations(shown),
        "stats": {**stats, "findings": len(merged), "by_severity": counts(merged), "truncated": truncated},
    }
