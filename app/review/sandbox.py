"""What the analysis subprocess runs: import-light, so the child starts with the engine and nothing else."""

import json

from app.review.analysis import analyze, analyze_schema

SOURCE, SCHEMA = "source", "schema"


def run_analysis(kind: str, source: str, language: str | None, permissions: list[str], max_bytes: int) -> dict:
    if kind == SCHEMA:
        return analyze_schema(json.loads(source), max_bytes)
    return analyze(source, language, permissions, max_bytes)
