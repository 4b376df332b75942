"""The rules of a tool review: submission, the states it moves through, decisions, signing and statistics.

A review moves forward only (docs/review.md, "Workflow"): submitted →
analyzing → approved_for_signing (auto-approved) or pending_review (a
person decides) → approved_for_signing → signed; or rejected; or
changes_requested, after which a new version is submitted against the same
tool. Every move is a conditional UPDATE on the state it leaves, so two
workers (or two reviewers) cannot both make it, and each is an event in the
same transaction. Analysis and signing are durable jobs (``workflow``).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from peewee import Case, fn

from app.core import events, jobs
from app.core.db import is_postgres, transaction, utcnow
from app.core.errors import BadRequest, Conflict, NotFound
from app.review.analysis import AnalysisInputError, check_source
from app.review.analysis.source import check_language
from app.review.models import (
    ANALYZING,
    APPROVED,
    CHANGES_REQUESTED,
    OPEN,
    PENDING_REVIEW,
    REJECTED,
    SCHEMA,
    SIGNED,
    SOURCE,
    STATES,
    SUBMITTED,
    ReviewAnalysis,
    ReviewFinding,
    ReviewSession,
    ReviewSignature,
)

ANALYSIS_KIND, SIGNING_KIND = "review.analysis", "review.signing"
DECISIONS = {"approve": APPROVED, "reject": REJECTED, "request_changes": CHANGES_REQUESTED}
# The SDK's status vocabulary, for a review's ``status``; the workflow state itself is ``state.type``.
SDK_STATUS = {SUBMITTED: "submitted", ANALYZING: "analyzing", PENDING_REVIEW: "pending_review",
              APPROVED: "approved", SIGNED: "signed", REJECTED: "rejected", CHANGES_REQUESTED: "rejected"}
SDK_STATUSES = ("submitted", "pending_analysis", "analyzing", "pending_review", "under_review", "approved",
                "rejected", "signed")
# Typical time of an analysis, for the SDK's ``estimated_completion``.
ESTIMATED_ANALYSIS_SECS = 30


def invalid(field: str, reason: str, message: str) -> BadRequest:
    """This API's 400: ``details {field, reason}`` as its reference writes them."""
    return BadRequest(message, details={"field": field, "reason": reason})


def key_dir(settings) -> Path:
    configured = settings.get("review.key_dir")
    return Path(configured) if configured else settings.data_dir / "signing"


# ---- submitting ------------------------------------------------------------------------


def _checked_source(source: str, settings) -> str:
    limit = settings.get("review.max_source_bytes")
    if len(source.encode("utf-8", "surrogatepass")) > limit:
        raise invalid("source_code", "too_large", f"Tool source code is larger than {limit} bytes")
    try:
        return check_source(source, limit)
    except AnalysisInputError as exc:
        raise invalid("source_code", "unanalysable", f"Tool source code cannot be analysed: {exc.reason}") from None


def submit_source(data: dict, settings) -> ReviewSession:
    """A tool's source code, as the reference submits it."""
    source = _checked_source(data["source_code"], settings)
    try:
        language = check_language(data.get("language"))
    except AnalysisInputError as exc:
        raise invalid("language", "unsupported", exc.reason) from None
    metadata = data.get("metadata") or {}
    return _submit(kind=SOURCE, tool_name=data["tool_name"], tool_version=data["tool_version"], source=source,
                   language=language, description=metadata.get("description") or "",
                   author=metadata.get("author") or "", permissions=metadata.get("permissions") or [],
                   submitted_by=data.get("submitted_by") or metadata.get("author") or "", tool=None,
                   requested_priority=data.get("priority") or "normal")


def submit_schema(data: dict, settings) -> ReviewSession:
    """A tool schema, as the Symbiont SDK submits it: its descriptions and properties are what is reviewed."""
    tool = data["tool"]
    text = json.dumps(tool, sort_keys=True, ensure_ascii=False)
    limit = settings.get("review.max_source_bytes")
    if len(text.encode()) > limit:
        raise invalid("tool", "too_large", f"The tool schema is larger than {limit} bytes as JSON")
    provider = tool.get("provider") or {}
    return _submit(kind=SCHEMA, tool_name=tool["name"], tool_version=str(tool.get("version") or "1.0.0"),
                   source=text, language=None, description=tool.get("description") or "",
                   author=provider.get("name") or data["submitted_by"], permissions=[],
                   submitted_by=data["submitted_by"], tool=tool,
                   requested_priority=data.get("priority") or "normal")


def _submit(*, kind, tool_name, tool_version, source, language, description, author, permissions, submitted_by,
            tool, requested_priority) -> ReviewSession:
    now = utcnow()
    with transaction():
        previous = (ReviewSession.select(ReviewSession.id)
                    .where((ReviewSession.tool_name == tool_name) & (ReviewSession.status == CHANGES_REQUESTED))
                    .order_by(ReviewSession.created_at.desc()).first())
        row = ReviewSession.create(
            id=str(uuid.uuid4()), kind=kind, tool_name=tool_name, tool_version=tool_version, language=language,
            source=source, description=description, author=author, permissions=json.dumps(permissions),
            tool=json.dumps(tool) if tool is not None else None, submitted_by=submitted_by,
            requested_priority=requested_priority, status=SUBMITTED,
            previous_id=previous.id if previous else None, created_at=now, updated_at=now)
        jobs.enqueue(ANALYSIS_KIND, {"review_id": row.id}, partition=tool_name)
        events.publish("review.submitted", event_payload(row))
    return row


def estimated_completion(row: ReviewSession) -> datetime | None:
    if row.status not in (SUBMITTED, ANALYZING):
        return None
    return row.created_at + timedelta(seconds=ESTIMATED_ANALYSIS_SECS)


def event_payload(row: ReviewSession, **extra) -> dict:
    return {"review_id": row.id, "tool_name": row.tool_name, "tool_version": row.tool_version,
            "status": row.status, "risk_score": row.risk_score, **extra}


# ---- reading ---------------------------------------------------------------------------


def get_session(review_id: str) -> ReviewSession:
    row = ReviewSession.get_or_none(ReviewSession.id == review_id)
    if row is None:
        raise NotFound(f"No review {review_id}", details={"field": "review_id", "reason": "not_found"})
    return row


def _states_for(status: str) -> list[str]:
    if status in STATES:
        return [status]
    if status in SDK_STATUSES:
        return [state for state, shown in SDK_STATUS.items() if shown == status]
    raise invalid("status", "unknown_status", f"Unknown status {status!r}: one of "
                  f"{', '.join(sorted(set(STATES) | set(SDK_STATUSES)))}")


def list_sessions(page: int, limit: int, status: str | None, author: str | None) -> tuple[list[ReviewSession], int]:
    """One page of reviews, newest first, and how many match in all (both counted by the database)."""
    where = ReviewSession.id.is_null(False)
    if status:
        where &= ReviewSession.status.in_(_states_for(status))
    if author:
        where &= ReviewSession.author == author
    total = ReviewSession.select().where(where).count()
    rows = list(ReviewSession.select().where(where)
                .order_by(ReviewSession.created_at.desc(), ReviewSession.id)
                .paginate(page, limit))
    return rows, total


def analysis_of(row: ReviewSession) -> ReviewAnalysis | None:
    if row.analysis_id is None:
        return None
    return ReviewAnalysis.get_or_none(ReviewAnalysis.id == row.analysis_id)


def analyses_of(rows: list[ReviewSession]) -> dict[str, ReviewAnalysis]:
    ids = [row.analysis_id for row in rows if row.analysis_id]
    if not ids:
        return {}
    return {analysis.review_id: analysis for analysis in ReviewAnalysis.select().where(ReviewAnalysis.id.in_(ids))}


def get_analysis(analysis_id: str) -> ReviewAnalysis:
    analysis = ReviewAnalysis.get_or_none(ReviewAnalysis.id == analysis_id)
    if analysis is None:
        raise NotFound(f"No analysis {analysis_id}", details={"field": "analysis_id", "reason": "not_found"})
    return analysis


def duration_text(seconds: float | None) -> str:
    """The reference's ``2h 30m`` style: days, hours and minutes, the two largest parts that are not zero."""
    if seconds is None:
        return "0m"
    minutes = int(max(seconds, 0) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{value}{unit}" for value, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if value]
    return " ".join(parts[:2]) or "0m"


def _seconds_between(later, earlier):
    """SQL for ``later - earlier`` in seconds, on either database."""
    if is_postgres():
        return fn.date_part("epoch", later - earlier)
    return (fn.julianday(later) - fn.julianday(earlier)) * 86400.0


def queue() -> tuple[list[ReviewSession], dict]:
    """Reviews waiting for a person, high priority first, oldest first; and the queue's figures."""
    waiting = ReviewSession.status == PENDING_REVIEW
    rows = list(ReviewSession.select().where(waiting)
                .order_by(Case(None, [(ReviewSession.priority == "high", 0)], 1), ReviewSession.escalated_at))
    now = utcnow()
    total, high, wait = (ReviewSession
                         .select(fn.COUNT(ReviewSession.id),
                                 fn.SUM(Case(None, [(ReviewSession.priority == "high", 1)], 0)),
                                 fn.AVG(_seconds_between(now, ReviewSession.escalated_at)))
                         .where(waiting).scalar(as_tuple=True))
    return rows, {"total_pending": total or 0, "high_priority": int(high or 0),
                  "average_wait_time": duration_text(float(wait) if wait is not None else None)}


# ---- deciding --------------------------------------------------------------------------


def decide(review_id: str, decision: str, comments: str | None, conditions: list[str],
           reviewer_id: str) -> tuple[ReviewSession, datetime]:
    """A person's decision on a queued review; approval enqueues the signing at once. 409 unless it waits."""
    now = utcnow()
    next_state = DECISIONS[decision]
    with transaction():
        row = get_session(review_id)
        moved = (ReviewSession.update(status=next_state, decision=decision, comments=comments,
                                      conditions=json.dumps(conditions), reviewer_id=reviewer_id, decided_at=now,
                                      auto_approved=False, updated_at=now)
                 .where((ReviewSession.id == review_id) & (ReviewSession.status == PENDING_REVIEW)).execute())
        if not moved:
            raise Conflict(f"Review {review_id} is {row.status}: only a review pending human review takes a decision",
                           details={"field": "status", "reason": row.status})
        row = get_session(review_id)
        if next_state == APPROVED:
            jobs.enqueue(SIGNING_KIND, {"review_id": row.id}, partition=row.tool_name)
        events.publish("review.decided", event_payload(row, decision=decision, reviewer_id=reviewer_id,
                                                       conditions=conditions, next_status=next_state))
    return row, now


# ---- signing ---------------------------------------------------------------------------


def signing_status(row: ReviewSession) -> str:
    if row.status == SIGNED:
        return "completed"
    if row.status == APPROVED:
        return "failed" if row.signing_error and row.signing_error.startswith("gave up") else "pending"
    if row.status in (REJECTED, CHANGES_REQUESTED):
        return "not_approved"
    return "awaiting_approval"


def signature_of(review_id: str) -> ReviewSignature | None:
    return ReviewSignature.get_or_none(ReviewSignature.review_id == review_id)


def signed(review_id: str) -> tuple[ReviewSession, ReviewSignature]:
    """The signature and package of a signed review: 404 for an unknown review, 409 until it is signed."""
    row = get_session(review_id)
    signature = signature_of(review_id)
    if signature is None:
        raise Conflict(f"Review {review_id} is not signed (status {row.status}, signing {signing_status(row)})",
                       details={"field": "review_id", "reason": "not_signed"})
    return row, signature


def sign_now(review_id: str, settings) -> tuple[ReviewSession, ReviewSignature]:
    """Sign an approved review now (the SDK asks for it); a signed one answers its signature."""
    from app.review import workflow  # here: the workflow's jobs use this module's rules

    row = get_session(review_id)
    if row.status == SIGNED:
        return signed(review_id)
    if row.status != APPROVED:
        raise Conflict(f"Review {review_id} is {row.status}: only an approved review is signed",
                       details={"field": "review_id", "reason": row.status})
    workflow.sign(row, settings)
    return signed(review_id)


# ---- statistics ------------------------------------------------------------------------


def stats(settings) -> dict:
    """Workflow counts, performance and security figures, each counted by the database."""
    s = ReviewSession

    def count_in(states):
        return fn.SUM(Case(None, [(s.status.in_(states), 1)], 0))

    decided = s.decided_at.is_null(False)
    total, approved, rejected, changes, pending, auto, queued, decided_count, review_secs = (
        s.select(fn.COUNT(s.id), count_in([APPROVED, SIGNED]), count_in([REJECTED]), count_in([CHANGES_REQUESTED]),
                 count_in(list(OPEN)), fn.SUM(Case(None, [(s.auto_approved == True, 1)], 0)),  # noqa: E712
                 fn.SUM(Case(None, [(s.escalated_at.is_null(False), 1)], 0)),
                 fn.SUM(Case(None, [(decided, 1)], 0)),
                 fn.AVG(Case(None, [(decided, _seconds_between(s.decided_at, s.created_at))], None)))
        .scalar(as_tuple=True))
    analysed = (s.select(fn.COUNT(s.id)).where(s.analysis_id.is_null(False)).scalar()) or 0
    low_below, high_from = settings.get("review.auto_approve_below"), settings.get("review.high_priority_from")
    a = ReviewAnalysis
    low, medium, high = (a.select(fn.SUM(Case(None, [(a.risk_score < low_below, 1)], 0)),
                                  fn.SUM(Case(None, [((a.risk_score >= low_below) & (a.risk_score < high_from), 1)],
                                              0)),
                                  fn.SUM(Case(None, [(a.risk_score >= high_from, 1)], 0)))
                         .scalar(as_tuple=True))
    f = ReviewFinding
    common = [category for (category,) in
              f.select(f.category).where(f.severity.in_(["critical", "high", "medium"]))
              .group_by(f.category).order_by(fn.COUNT(f.id).desc(), f.category).limit(5).tuples()]
    return {
        "workflow_stats": {"total_reviews": total or 0, "approved": int(approved or 0),
                           "rejected": int(rejected or 0), "changes_requested": int(changes or 0),
                           "pending": int(pending or 0)},
        "performance_metrics": {
            "average_review_time": duration_text(float(review_secs) if review_secs is not None else None),
            "auto_approval_rate": _rate(auto, decided_count),
            "human_review_rate": _rate(queued, analysed),
        },
        "security_insights": {"common_vulnerabilities": common,
                              "risk_score_distribution": _percentages(low, medium, high)},
    }


def _rate(part, whole) -> float:
    return round(int(part or 0) / whole, 3) if whole else 0.0


def _percentages(low, medium, high) -> dict:
    counts = {"low": int(low or 0), "medium": int(medium or 0), "high": int(high or 0)}
    total = sum(counts.values())
    return {band: round(100 * value / total) if total else 0 for band, value in counts.items()}


def status_counts(_settings) -> dict:
    """For GET /api/v1/status: reviews being analysed, waiting for a person, and approved but not yet signed."""
    counts = dict(ReviewSession.select(ReviewSession.status, fn.COUNT(ReviewSession.id))
                  .where(ReviewSession.status.in_([SUBMITTED, ANALYZING, PENDING_REVIEW, APPROVED]))
                  .group_by(ReviewSession.status).tuples())
    return {"review": {"analyzing": counts.get(SUBMITTED, 0) + counts.get(ANALYZING, 0),
                       "pending_review": counts.get(PENDING_REVIEW, 0), "signing": counts.get(APPROVED, 0)}}
