"""The review's background work: analysing (``review.analysis``) and signing (``review.signing``), as durable jobs.

Both are partitioned by tool name, so one tool submitted a hundred times
cannot take every slot. Analysis runs the engine in a subprocess with CPU,
memory and wall-clock limits (``app.core.offhub``): submitted code is
untrusted input and a pathological file must cost a bounded amount and then
end in a result. A worker that dies mid-analysis loses its claim and another
worker runs the job again. Results are recorded in the job's own recording
transaction (``on_success``), only while the claim is held, so an analysis
is recorded once. An analysis that cannot complete (limits, refused input,
repeated faults) sends the review to a person, high priority, never to
auto-approval.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from peewee import IntegrityError

from app.core import events, jobs, offhub
from app.core.db import advisory_lock, connection, iso, transaction, utcnow
from app.core.errors import ServiceUnavailable
from app.review import knowledge, package, sandbox, signing
from app.review.knowledge import store as knowledge_store
from app.review.models import (
    ANALYZING,
    APPROVED,
    PENDING_REVIEW,
    SCHEMA,
    SIGNED,
    SUBMITTED,
    ReviewAnalysis,
    ReviewFinding,
    ReviewSession,
    ReviewSignature,
)
from app.review.service import ANALYSIS_KIND, SIGNING_KIND, event_payload, key_dir

log = logging.getLogger("review::workflow")

ANALYSIS_RETRIES = (5.0, 30.0, 120.0)  # faults of the analyser itself, not of the code: then a person decides
SIGNING_RETRIES = (5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)  # e.g. until `flask signing init` has been run
CLAIM_MARGIN_SECS = 30.0
REVIEWER_ROTATION_LOCK_KEY = 0x4C6B7276  # arbitrary, fixed: "Lkrv"
INSIGHT_FINDINGS = 8  # the most severe findings each look up the knowledge base
INSIGHTS_PER_FINDING = 2
MAX_INSIGHTS = 8
SEVERE = ("critical", "high")
RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}


@dataclass(frozen=True)
class Analysed:
    result: dict
    insights: list[dict]
    error: str | None
    started_at: datetime


# ---- analysis -------------------------------------------------------------------------


def analysis_limits(state) -> jobs.Limits:
    settings = state.settings
    return jobs.Limits(claim_secs=settings.get("review.analysis_timeout_secs") + CLAIM_MARGIN_SECS,
                       schedule=ANALYSIS_RETRIES, concurrency=settings.get("review.max_concurrency"),
                       per_partition=2, poll_secs=settings.get("review.poll_interval_secs"))


def _begin(review_id: str) -> ReviewSession | None:
    """Mark the review as being analysed; None when it no longer waits for an analysis."""
    with transaction():
        (ReviewSession.update(status=ANALYZING, analysis_started_at=utcnow(), updated_at=utcnow())
         .where((ReviewSession.id == review_id) & (ReviewSession.status == SUBMITTED)).execute())
        row = ReviewSession.get_or_none(ReviewSession.id == review_id)
    return row if row is not None and row.status == ANALYZING else None


def incomplete(reason: str) -> dict:
    """The analysis of code that could not be analysed: one high finding, so a person looks at it."""
    finding = {"finding_id": str(uuid.uuid4()), "rule_id": "analysis-incomplete", "severity": "high",
               "category": "analysis", "title": "Analysis did not complete",
               "description": f"The automated analysis could not complete ({reason}); the tool was not reviewed "
                              "automatically.",
               "location": "", "line": None, "recommendation": "Review the code by hand, or submit it in a form "
               "the analyser can read (smaller, less deeply nested).", "cwe": None, "snippet": "", "confidence": 1.0}
    return {"language": None, "findings": [finding], "risk_score": 40,
            "recommendations": [finding["recommendation"]], "stats": {"incomplete": reason}}


def analyse(claim: jobs.Claim, state) -> jobs.Outcome:
    settings = state.settings
    started = utcnow()
    with connection():
        row = _begin(claim.payload["review_id"])
    if row is None:
        return jobs.Outcome(jobs.SUCCEEDED)
    error = None
    try:
        result = offhub.in_subprocess(
            sandbox.run_analysis, row.kind, row.source, row.language, json.loads(row.permissions),
            settings.get("review.max_source_bytes"), timeout=settings.get("review.analysis_timeout_secs"),
            memory_mb=settings.get("review.analysis_memory_mb"), cpu_secs=settings.get("review.analysis_cpu_secs"))
    except offhub.Crashed as exc:
        if exc.kind not in ("AnalysisInputError", "RecursionError"):
            return jobs.Outcome(jobs.RETRY, error=str(exc)[:500])
        error = f"input refused: {exc.detail}"
    except (offhub.TimedOut, offhub.OutOfMemory) as exc:
        error = str(exc)
    if error is not None:
        log.info("review %s: analysis incomplete: %s", row.id, error)
        result = incomplete(error)
    claim.check()
    with connection():
        insights = rag_insights(result["findings"])
    return jobs.Outcome(jobs.SUCCEEDED, detail=Analysed(result, insights, error, started))


_knowledge_loaded = False


def _ensure_knowledge() -> None:
    """The shipped knowledge base, loaded once into a database that has none."""
    global _knowledge_loaded
    if _knowledge_loaded:
        return
    try:
        if knowledge_store.count() == 0:
            knowledge.load_builtin()
    except IntegrityError:
        pass  # another worker loaded it at the same moment
    _knowledge_loaded = True


def rag_insights(findings: list[dict]) -> list[dict]:
    """Knowledge-base guidance for the most severe findings, best first, one entry once."""
    _ensure_knowledge()
    best: dict[str, dict] = {}
    for finding in sorted(findings, key=lambda f: RANK.get(f["severity"], 9))[:INSIGHT_FINDINGS]:
        texts = [finding["title"], finding["description"], finding["category"], finding.get("cwe") or ""]
        for hit in knowledge.search(texts, INSIGHTS_PER_FINDING):
            hit = {**hit, "finding_id": finding["finding_id"]}
            known = best.get(hit["insight"])
            if known is None or hit["relevance_score"] > known["relevance_score"]:
                best[hit["insight"]] = hit
    return sorted(best.values(), key=lambda hit: -hit["relevance_score"])[:MAX_INSIGHTS]


def _next_reviewer(reviewers: list[str]) -> str | None:
    """Round robin over the reviews queued so far; called inside the transaction that queues one."""
    if not reviewers:
        return None
    # Held to commit: two analyses recorded at once would otherwise count the same queue and pick the same person.
    advisory_lock(REVIEWER_ROTATION_LOCK_KEY)
    queued = ReviewSession.select().where(ReviewSession.escalated_at.is_null(False)).count()
    return reviewers[queued % len(reviewers)]


def record_analysis(review_id: str, analysed: Analysed, settings) -> ReviewSession | None:
    """Store an analysis and route the review: auto-approved (then signed) or queued for a person."""
    result, now = analysed.result, utcnow()
    findings = result["findings"]
    analysis_id = str(uuid.uuid4())
    row = ReviewSession.get_or_none(ReviewSession.id == review_id)
    if row is None or row.status not in (SUBMITTED, ANALYZING):
        return None
    ReviewAnalysis.create(id=analysis_id, review_id=review_id, language=result.get("language"),
                          risk_score=result["risk_score"], findings=json.dumps(findings),
                          recommendations=json.dumps(result.get("recommendations") or []),
                          rag_insights=json.dumps(analysed.insights), stats=json.dumps(result.get("stats") or {}),
                          error=analysed.error, started_at=analysed.started_at, completed_at=now)
    if findings:
        ReviewFinding.insert_many([{"analysis_id": analysis_id, "severity": f["severity"], "category": f["category"],
                                    "cwe": f.get("cwe")} for f in findings]).execute()
    score = result["risk_score"]
    severities = {f["severity"] for f in findings}
    automatic = (analysed.error is None and not severities & set(SEVERE)
                 and score < settings.get("review.auto_approve_below"))
    fields = {"risk_score": score, "analysis_id": analysis_id, "updated_at": now}
    if row.kind != SCHEMA and result.get("language"):
        fields["language"] = result["language"]
    if automatic:
        fields.update(status=APPROVED, auto_approved=True, decision="approve", decided_at=now)
    else:
        high = score >= settings.get("review.high_priority_from") or "critical" in severities or analysed.error
        fields.update(status=PENDING_REVIEW, priority="high" if high else "normal", escalated_at=now,
                      assigned_to=_next_reviewer(settings.get("review.reviewers")))
    (ReviewSession.update(**fields)
     .where((ReviewSession.id == review_id) & ReviewSession.status.in_([SUBMITTED, ANALYZING])).execute())
    row = ReviewSession.get_by_id(review_id)
    events.publish("review.analyzed", event_payload(row, analysis_id=analysis_id, findings=len(findings)))
    if automatic:
        jobs.enqueue(SIGNING_KIND, {"review_id": review_id}, partition=row.tool_name)
        events.publish("review.decided", event_payload(row, decision="approve", reviewer_id=None, conditions=[],
                                                       next_status=APPROVED, automatic=True))
    else:
        events.publish("review.queued", event_payload(row, priority=row.priority, assigned_to=row.assigned_to))
    return row


def _analysed(claim: jobs.Claim, outcome: jobs.Outcome, state) -> None:
    if outcome.detail is not None:
        record_analysis(claim.payload["review_id"], outcome.detail, state.settings)


def _analysis_gave_up(claim: jobs.Claim, outcome: jobs.Outcome, state) -> None:
    log.warning("review %s: analysis failed: %s", claim.payload["review_id"], outcome.error)
    record_analysis(claim.payload["review_id"], Analysed(incomplete("the analyser failed"), [], outcome.error
                                                         or "the analyser failed", utcnow()), state.settings)


ANALYSIS = jobs.Kind(name=ANALYSIS_KIND, handler=analyse, limits=analysis_limits, on_success=_analysed,
                     on_gave_up=_analysis_gave_up)


# ---- signing --------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    data: bytes
    name: str
    manifest: str
    signature: bytes
    key_id: str
    chain: list[str]
    schemapin: dict | None
    signed_at: datetime


def signing_limits(state) -> jobs.Limits:
    settings = state.settings
    return jobs.Limits(claim_secs=60.0, schedule=SIGNING_RETRIES, concurrency=settings.get("review.max_concurrency"),
                       per_partition=2, poll_secs=settings.get("review.poll_interval_secs"))


def tool_schema_of(row: ReviewSession) -> dict:
    """The tool as its schema: as submitted, or built from a source submission's name and metadata."""
    if row.tool:
        return json.loads(row.tool)
    return {"name": row.tool_name, "version": row.tool_version, "description": row.description,
            "schema": {"type": "object", "properties": {}, "required": []},
            "provider": {"name": row.author or row.submitted_by or "unknown"}}


def build(row: ReviewSession, settings) -> Built:
    """The signed package of an approved review (``SigningError`` when there is no usable key)."""
    directory = key_dir(settings)
    signer = signing.signer(directory)
    analysis = ReviewAnalysis.get_or_none(ReviewAnalysis.id == row.analysis_id) if row.analysis_id else None
    now = utcnow()
    signed_at = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as the manifest shows it
    files = {package.source_path(row.language if row.kind != SCHEMA else None): row.source.encode()}
    schemapin = None
    if settings.get("review.signing") == "schemapin":
        pin = signing.schemapin_signer(directory)
        schema = tool_schema_of(row)
        schemapin = {"algorithm": signing.SCHEMAPIN_ALGORITHM, "schema": schema, "signature": pin.sign(schema),
                     "public_key_pem": pin.public_key_pem()}
        files[package.SCHEMAPIN] = (json.dumps(schemapin, indent=2, sort_keys=True) + "\n").encode()
    manifest_fields = {
        "tool": {"name": row.tool_name, "version": row.tool_version, "kind": row.kind, "language": row.language,
                 "description": row.description},
        "review": {"review_id": row.id, "decision": row.decision or "approve",
                   "conditions": json.loads(row.conditions or "[]"), "risk_score": row.risk_score,
                   "analysis_id": row.analysis_id, "auto_approved": bool(row.auto_approved),
                   "reviewer_id": row.reviewer_id,
                   "findings": len(json.loads(analysis.findings)) if analysis else 0},
    }
    data, manifest, signature = package.build(signer, files, manifest_fields, signed_at)
    return Built(data, package.file_name(row.tool_name, row.tool_version), manifest, signature, signer.key_id,
                 signer.chain_pem(), schemapin, signed_at)


def store(review_id: str, built: Built) -> bool:
    """Record a signature and move the review to signed; False when it was signed already (or is gone)."""
    with transaction():
        moved = (ReviewSession.update(status=SIGNED, signing_error=None, updated_at=utcnow())
                 .where((ReviewSession.id == review_id) & (ReviewSession.status == APPROVED)).execute())
        if not moved:
            return False
        ReviewSignature.create(review_id=review_id, algorithm=signing.ALGORITHM, key_id=built.key_id,
                               signature=base64.b64encode(built.signature).decode(),
                               certificate_chain=json.dumps(built.chain), manifest=built.manifest,
                               schemapin=json.dumps(built.schemapin) if built.schemapin else None,
                               package=built.data, package_name=built.name, signed_at=built.signed_at)
        row = ReviewSession.get_by_id(review_id)
        events.publish("tool.signed", event_payload(row, key_id=built.key_id, algorithm=signing.ALGORITHM,
                                                    signed_at=iso(built.signed_at)))
    return True


def sign(row: ReviewSession, settings) -> None:
    """Sign an approved review now (the SDK's request); whoever stores first wins, the other result is dropped."""
    try:
        built = build(row, settings)
    except signing.SigningError as exc:
        raise ServiceUnavailable(f"Signing is not available: {exc}") from None
    store(row.id, built)


def sign_job(claim: jobs.Claim, state) -> jobs.Outcome:
    with connection():
        row = ReviewSession.get_or_none(ReviewSession.id == claim.payload["review_id"])
        if row is None or row.status != APPROVED:
            return jobs.Outcome(jobs.SUCCEEDED)
        try:
            built = build(row, state.settings)
        except signing.SigningError as exc:
            return jobs.Outcome(jobs.RETRY, error=str(exc))
    return jobs.Outcome(jobs.SUCCEEDED, detail=built)


def _signed(claim: jobs.Claim, outcome: jobs.Outcome, state) -> None:
    if outcome.detail is not None:
        store(claim.payload["review_id"], outcome.detail)


def _signing_failed(claim: jobs.Claim, outcome: jobs.Outcome, state) -> None:
    log.warning("review %s: signing failed: %s", claim.payload["review_id"], outcome.error)
    (ReviewSession.update(signing_error=outcome.error)
     .where(ReviewSession.id == claim.payload["review_id"]).execute())


def _signing_gave_up(claim: jobs.Claim, outcome: jobs.Outcome, state) -> None:
    (ReviewSession.update(signing_error=f"gave up: {outcome.error}")
     .where(ReviewSession.id == claim.payload["review_id"]).execute())


SIGNING = jobs.Kind(name=SIGNING_KIND, handler=sign_job, limits=signing_limits, on_success=_signed,
                    on_failure=_signing_failed, on_gave_up=_signing_gave_up)
KINDS = (ANALYSIS, SIGNING)
