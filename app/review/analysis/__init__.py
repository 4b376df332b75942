"""The Tool Review analysis engine: static analysis of submitted tool code and tool schemas.

Everything here is pure and runs without the application or a database, so
the review workflow can run it in a subprocess with CPU, memory and time
limits (``app.core.offhub``). Submitted code is parsed, never executed or
imported.
"""

from app.review.analysis.capabilities import PERMISSIONS
from app.review.analysis.engine import analyze
from app.review.analysis.findings import SEVERITIES, risk_score
from app.review.analysis.schema import SCHEMA_CATEGORIES, analyze_schema
from app.review.analysis.source import LANGUAGES, MAX_SOURCE_BYTES, AnalysisInputError, check_source, detect_language

__all__ = [
    "LANGUAGES", "MAX_SOURCE_BYTES", "PERMISSIONS", "SCHEMA_CATEGORIES", "SEVERITIES", "AnalysisInputError",
    "analyze", "analyze_schema", "check_source", "detect_language", "risk_score",
]
