"""``analyze``: one submitted tool's source through every rule for its language.

Pure: the answer depends only on the arguments and the installed rule
versions (``stats.duration_ms`` aside), and the submitted code is parsed, never executed or imported. It
is meant to run in a subprocess with limits; input that cannot be analysed
raises ``AnalysisInputError``, and code too complex to parse becomes a
finding rather than a crash.
"""

from __future__ import annotations

import ast
import gc
import time
import warnings
from collections import Counter
from contextlib import contextmanager

from app.review.analysis import bandit_scan, capabilities, js_rules, python_rules, text_rules
from app.review.analysis.findings import Finding, report
from app.review.analysis.source import MAX_SOURCE_BYTES, check_language, check_source, detect_language, split_lines

# Past this many occurrences of one rule the rest only add to the count: a file of
# 100,000 identical calls is no more dangerous for its 100,001st.
MAX_PER_RULE = 100
# Bandit's visitor costs about 20 µs a node: past this the analysis could outlast its time limit.
# A 5,000-line tool has some 35,000 nodes.
BANDIT_MAX_NODES = 150_000


def analyze(source, language: str | None, permissions: list[str], max_bytes: int = MAX_SOURCE_BYTES) -> dict:
    """Findings, risk score, recommendations and statistics for one tool's source code."""
    with _collector_paused():
        return _analyze(source, language, permissions, max_bytes)


@contextmanager
def _collector_paused():
    """No cyclic garbage collection while the syntax trees are alive.

    The trees are hundreds of thousands of objects that all stay reachable
    until the analysis ends, so every collection in between traverses them
    and frees almost nothing: about a quarter of the analysis time. What
    did become cyclic garbage (bandit links each node to its parent) is
    collected once at the end, here, rather than by whoever runs next. Only
    a caller that had the collector on gets it back on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
            gc.collect(0)


def _analyze(source, language: str | None, permissions: list[str], max_bytes: int) -> dict:
    started = time.perf_counter()
    text = check_source(source, max_bytes)
    language = check_language(language) or detect_language(text)
    lines = split_lines(text)
    if language == "python":
        found, details = _python(text, lines)
    else:
        found, details = js_rules.analyse(text, language)
    found += text_rules.scan(text)
    found, dropped = _capped(found)
    found += capabilities.undeclared(found, permissions)
    stats = {
        "lines": len(lines),
        "bytes": len(text.encode("utf-8")),
        **details,
        "capabilities": sorted({f.capability for f in found if f.capability}),
        "declared": sorted(capabilities.normalise(permissions)[0]),
        "dropped": dropped,
        "duration_ms": round((time.perf_counter() - started) * 1000, 1),
    }
    return report(language, found, stats)


def _python(text: str, lines: list[str]) -> tuple[list[Finding], dict]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes in the submitted code are not ours to report
            tree = ast.parse(text)
    except SyntaxError as exc:
        return [_unparsable(exc)], {"parsed": False}
    except (RecursionError, MemoryError):
        return [_too_complex()], {"parsed": False}
    try:
        ours, nodes = python_rules.analyse(tree, lines)
    except (RecursionError, MemoryError):
        return [_too_complex()], {"parsed": False}
    del tree
    if nodes > BANDIT_MAX_NODES:
        return ours + [_bandit_skipped(nodes)], {"parsed": True, "nodes": nodes, "bandit": {"skipped": ["too large"]}}
    theirs, bandit = bandit_scan.scan(text, lines)
    return ours + bandit_scan.covered(theirs, ours), {"parsed": True, "nodes": nodes, "bandit": bandit}


def _bandit_skipped(nodes: int) -> Finding:
    return Finding(
        rule_id="bandit-skipped", severity="info", category="analysis", title="Bandit skipped",
        description=f"The code has {nodes} syntax nodes, more than bandit is run on ({BANDIT_MAX_NODES}); "
                    "only Lockgate's own rules checked it.",
        recommendation="Split very large tools into modules of reviewable size.", line=1, confidence=1.0,
    )


def _unparsable(exc: SyntaxError) -> Finding:
    line = exc.lineno if isinstance(exc.lineno, int) and exc.lineno > 0 else 1
    return Finding(
        rule_id="py-syntax-error", severity="high", category="analysis", title="Code does not parse",
        description=f"The code is not valid Python ({exc.msg} at line {line}), so its behaviour could not be "
                    "reviewed.",
        recommendation="Submit code that parses with the Python version the tool runs on.",
        line=line, confidence=1.0,
    )


def _too_complex() -> Finding:
    return Finding(
        rule_id="too-complex", severity="high", category="analysis", title="Code too complex to analyse",
        description="The code is nested too deeply to be parsed, so its behaviour could not be reviewed.",
        recommendation="Flatten the deeply nested expressions; code no reviewer can read must not be approved.",
        line=1, confidence=1.0,
    )


def _capped(found: list[Finding]) -> tuple[list[Finding], int]:
    seen: Counter = Counter()
    kept: list[Finding] = []
    for finding in found:
        seen[finding.rule_id] += 1
        if seen[finding.rule_id] <= MAX_PER_RULE:
            kept.append(finding)
    dropped = sum(max(0, n - MAX_PER_RULE) for n in seen.values())
    return kept, dropped

