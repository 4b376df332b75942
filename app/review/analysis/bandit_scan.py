"""Bandit's checks on Python source, through its public manager API on a temporary file.

Bandit runs inside the analysis subprocess like the rest of the engine; its
``# nosec`` markers are ignored, since they are written by the very author
under review.
"""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from pathlib import Path

from app.review.analysis.findings import RANK, Finding, snippet_of

# assert_used says nothing about a tool's risk, and every test suite would trip it.
EXCLUDED_TESTS = ("B101",)
QUOTED = re.compile(r"(['\"])([^'\"\n]{1,300})\1")
KEPT_ALONGSIDE = {"bandit-B105", "bandit-B106", "bandit-B107"}
SEVERITY = {"HIGH": "high", "MEDIUM": "medium", "LOW": "low", "UNDEFINED": "info"}
CONFIDENCE = {"HIGH": 0.9, "MEDIUM": 0.7, "LOW": 0.5, "UNDEFINED": 0.3}
CATEGORY_BY_CWE = {
    78: "command_injection", 77: "command_injection", 94: "code_injection", 95: "code_injection",
    502: "deserialization", 259: "hardcoded_secret", 798: "hardcoded_secret", 377: "insecure_temp_file",
    327: "weak_crypto", 328: "weak_crypto", 326: "weak_crypto", 295: "insecure_transport",
    319: "insecure_transport", 89: "sql_injection", 79: "code_injection", 20: "input_validation",
    22: "filesystem", 732: "filesystem", 400: "resource_abuse", 605: "network_egress", 330: "weak_crypto",
}


def scan(source: str, lines: list[str]) -> tuple[list[Finding], dict]:
    """Bandit's findings and a summary of the run (its version, issues, whether it skipped the file)."""
    with tempfile.TemporaryDirectory(prefix="lockgate-review-") as directory, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bandit's plugin loader warns about its own deprecated arguments
        from bandit import __version__
        from bandit.core import config, manager

        logging.getLogger("bandit").setLevel(logging.CRITICAL)
        path = Path(directory) / "tool.py"
        path.write_text(source, encoding="utf-8")
        run = manager.BanditManager(config.BanditConfig(), "file", quiet=True, ignore_nosec=True,
                                    profile={"exclude": EXCLUDED_TESTS})
        run.discover_files([str(path)])
        run.run_tests()
        issues = run.get_issue_list()
        skipped = [reason for _, reason in run.get_skipped()]
    findings = [_finding(issue, lines) for issue in issues]
    return findings, {"version": __version__, "issues": len(findings), "skipped": skipped}


def _title(text: str) -> str:
    first = text.split(" - ", 1)[0].split(". ", 1)[0].rstrip(".")
    return first if len(first) <= 80 else first[:77] + "..."


def covered(theirs: list[Finding], ours: list[Finding]) -> list[Finding]:
    """Bandit's findings our rules did not already make, as severe or more, at the same line.

    Its hard-coded password checks stay: ours look for secrets differently.
    """
    worst: dict[int, int] = {}
    for finding in ours:
        if finding.line is not None:
            worst[finding.line] = max(worst.get(finding.line, 0), RANK[finding.severity])
    return [finding for finding in theirs
            if finding.rule_id in KEPT_ALONGSIDE or RANK[finding.severity] > worst.get(finding.line, 0)]


def _finding(issue, lines: list[str]) -> Finding:
    cwe = issue.cwe.id if issue.cwe and issue.cwe.id else None
    line = issue.lineno if isinstance(issue.lineno, int) else None
    text = lines[line - 1] if line and 0 < line <= len(lines) else ""
    rule_id = f"bandit-{issue.test_id}"
    description = issue.text
    if rule_id in KEPT_ALONGSIDE:
        # Its text quotes the password; the finding must not repeat it.
        description = issue.text.split(":", 1)[0].strip() + "."
        text = QUOTED.sub(r"\1…[redacted]\1", text)
    return Finding(
        rule_id=rule_id,
        severity=SEVERITY.get(issue.severity, "info"),
        category=CATEGORY_BY_CWE.get(cwe, "insecure_code"),
        title=_title(description),
        description=description,
        recommendation=f"Review the use flagged by bandit {issue.test_id} and replace it with a safe alternative.",
        line=line,
        cwe=f"CWE-{cwe}" if cwe else None,
        snippet=snippet_of(text),
        confidence=CONFIDENCE.get(issue.confidence, 0.5),
    )
