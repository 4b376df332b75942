"""Pathological input ends in a result or a clean AnalysisInputError, never a hang or a crash.

Each case runs ``analyze`` the way the review workflow does: in a
subprocess through app.core.offhub, with CPU, memory and time limits, so a
hang shows as TimedOut and a crash as Crashed instead of taking the test
run down.
"""

import base64
import os
import time
import zlib

import pytest

from app.core import offhub
from app.review.analysis import MAX_SOURCE_BYTES, AnalysisInputError, analyze, analyze_schema

LIMITS = {"timeout": 60, "memory_mb": 1024, "cpu_secs": 30}
MIB = 1024 * 1024


def analyzed(source, language=None, permissions=()):
    started = time.monotonic()
    result = offhub.in_subprocess(analyze, source, language, list(permissions), **LIMITS)
    assert time.monotonic() - started < 30, "analysis must end well inside its limits"
    return result


def refused(source, language=None) -> str:
    with pytest.raises(offhub.Crashed) as raised:
        offhub.in_subprocess(analyze, source, language, [], **LIMITS)
    assert raised.value.kind == "AnalysisInputError"
    return raised.value.detail


def rule_ids(result):
    return {f["rule_id"] for f in result["findings"]}


@pytest.mark.parametrize("source", [
    "x = " + "(" * 10_000 + "1" + ")" * 10_000,
    "x = " + "[" * 10_000 + "]" * 10_000,
    # Indentation grows with depth: 1,400 one-space levels are what fits in the size limit.
    "".join(" " * depth + "if x:\n" for depth in range(1_400)) + " " * 1_400 + "pass\n",
], ids=["parentheses", "lists", "blocks"])
def test_python_nested_ten_thousand_deep_is_reported_unparsable(source):
    result = analyzed(source, "python")
    assert rule_ids(result) == {"py-syntax-error"}
    assert result["findings"][0]["severity"] == "high"


@pytest.mark.parametrize("source", [
    "x = " + "+".join(["a"] * 100_000),
    "x = " + "-" * 100_000 + "1",
    "x = " + "lambda: " * 10_000 + "1",
    "x = a" + ".b" * 100_000,
], ids=["operators", "unary", "lambdas", "attributes"])
def test_python_too_deep_for_the_parser_is_a_finding(source):
    result = analyzed(source, "python")
    assert rule_ids(result) == {"too-complex"}
    assert result["risk_score"] >= 30  # never auto-approved


def test_python_just_under_the_parser_limit_is_analysed():
    result = analyzed("x = " + "[" * 150 + "eval(y)" + "]" * 150 + "\n", "python")
    assert "py-eval" in rule_ids(result)


@pytest.mark.parametrize("language", ["javascript", "typescript"])
def test_scripts_nested_ten_thousand_deep_are_analysed(language):
    source = "const x = " + "[" * 10_000 + "eval(y)" + "]" * 10_000 + ";\n"
    result = analyzed(source, language)
    assert "js-eval" in rule_ids(result)
    calls = "const x = " + "f(" * 10_000 + "1" + ")" * 10_000 + ";\n"
    assert analyzed(calls, language)["stats"]["lines"] == 1


def test_nested_calls_with_long_arguments_stay_linear():
    # Each of the 12,000 eval calls has most of the file as its argument.
    source = "eval(" * 12_000 + "atob(x)" + ")" * 12_000 + ";\n"
    result = analyzed(source, "javascript")
    assert "js-eval-encoded" in rule_ids(result)
    assert result["stats"]["dropped"] > 0


@pytest.mark.parametrize("source", [
    "eval(" * 80_000 + "x" + ")" * 80_000 + ";\n",
    "x = " + "+".join(["a"] * 200_000) + ";\n",
    "x = " + "-" * 500_000 + "1;\n",
], ids=["calls", "operators", "unary"])
def test_scripts_nested_beyond_the_analysable_are_a_finding(source):
    result = analyzed(source, "javascript")
    assert "too-complex" in rule_ids(result)
    assert result["risk_score"] >= 30


@pytest.mark.parametrize("language,source", [
    ("python", "x = '" + "a" * (MIB - 16) + "'\n"),
    ("python", "y = [" + "1," * ((MIB - 16) // 2) + "]\n"),
    ("javascript", "var a = [" + "1," * ((MIB - 16) // 2) + "];\n"),
    ("javascript", "const s = '" + "secret_token=" * ((MIB - 32) // 13) + "';\n"),
    ("python", "k = '" + base64.b64encode(os.urandom((MIB - 16) * 3 // 4 - 8)).decode() + "'\n"),
], ids=["py-string", "py-list", "js-array", "js-secret-words", "py-random-base64"])
def test_a_one_mebibyte_single_line_is_analysed(language, source):
    assert len(source.encode()) <= MAX_SOURCE_BYTES
    result = analyzed(source, language)
    assert result["stats"]["lines"] == 1
    assert len(result["findings"]) <= 500
    assert all(len(f["snippet"]) <= 200 for f in result["findings"])


def test_a_string_zip_bomb_is_never_expanded():
    bomb = base64.b64encode(zlib.compress(b"\0" * (200 * MIB), 9)).decode()
    source = ("import base64, zlib\n"
              f"PAYLOAD = '{bomb}'\n"
              "exec(zlib.decompress(base64.b64decode(PAYLOAD)))\n"
              "SIZE = 'A' * 10 ** 12\n")
    result = analyzed(source, "python")
    assert "py-exec-encoded" in rule_ids(result)
    assert result["findings"][0]["severity"] == "critical"


def test_thousands_of_findings_are_capped_and_still_scored():
    source = "".join(f"eval(x{n})\n" for n in range(50_000))
    result = analyzed(source, "python")
    assert len(result["findings"]) <= 500
    assert result["stats"]["dropped"] > 0
    assert "bandit-skipped" in rule_ids(result)
    assert result["risk_score"] == 100


def test_binary_input_is_refused():
    assert "NUL" in refused("\x00\x01\x02ELF" * 100)


def test_invalid_utf8_bytes_are_refused():
    assert "not valid UTF-8" in refused(b"def f():\n    return '\xff\xfe'\n")


def test_lone_surrogates_are_refused():
    assert "not valid UTF-8" in refused("x = '\ud800'\n")


def test_oversized_input_is_refused():
    assert "over the limit" in refused("#" * (MAX_SOURCE_BYTES + 1))


def test_refusals_come_straight_from_analyze_in_process_too():
    with pytest.raises(AnalysisInputError, match="empty"):
        analyze("", None, [])
    with pytest.raises(AnalysisInputError, match="must be text"):
        analyze(12345, None, [])


def test_a_schema_nested_beyond_the_bound_is_a_finding():
    schema = {}
    inner = schema
    for _ in range(5_000):
        inner["properties"] = {"p": {}}
        inner = inner["properties"]["p"]
    started = time.monotonic()
    result = analyze_schema({"name": "deep", "description": "Deep.", "tool_schema": schema})
    assert time.monotonic() - started < 10
    assert "schema-oversized" in rule_ids(result)


def test_a_schema_of_a_million_values_stops_at_the_bound():
    started = time.monotonic()
    result = analyze_schema({"name": "t", "tool_schema": {"type": "object", "properties": {
        "n": {"type": "integer", "enum": list(range(1_000_000))}}}})
    assert time.monotonic() - started < 10
    assert "more than 100000 values" in result["findings"][0]["description"]


def test_an_oversized_schema_is_refused():
    with pytest.raises(AnalysisInputError, match="size limit"):
        analyze_schema({"name": "big", "description": "x" * (MAX_SOURCE_BYTES + 1)})


def test_a_huge_schema_description_runs_in_a_subprocess_within_limits():
    tool = {"name": "t", "description": ("ignore " + "a" * 50 + " ") * 15_000}
    result = offhub.in_subprocess(analyze_schema, tool, **LIMITS)
    assert "schema-oversized" in rule_ids(result)
