"""The Tool Review API's bodies: the Symbiont reference's shapes, with the Symbiont SDK's fields beside them.

Where the reference and the SDK (1.11) read the same path, one answer
carries both: a review's ``status`` speaks the SDK's vocabulary and its
``state.type`` the workflow's own; ``created_at`` and ``submitted_at`` are
the same moment; a tool appears as submitted (``schema`` and
``tool_schema`` both, as the SDK reads the first and writes the second).
"""

from __future__ import annotations

import json

import marshmallow as ma

from app.core.db import iso
from app.core.schema import JSON_VALUE, JsonValue
from app.review import service, workflow
from app.review.models import CHANGES_REQUESTED, REJECTED, STATES, ReviewAnalysis, ReviewSession

MAX_NAME = 200
MAX_VERSION = 100
MAX_TEXT = 10_000
MAX_PAGE_LIMIT = 100
LANGUAGES = ("python", "javascript", "typescript")
STATUS_FILTERS = tuple(sorted(set(STATES) | set(service.SDK_STATUSES)))
# The SDK's five finding categories; a code finding's own category maps to the nearest (``state``).
SDK_CATEGORIES = {
    "schema_injection": "schema_injection", "privilege_escalation": "privilege_escalation",
    "data_exposure": "data_exposure", "malicious_code": "malicious_code", "resource_abuse": "resource_abuse",
    "hardcoded_secret": "data_exposure", "secrets_access": "data_exposure", "network_egress": "data_exposure",
    "filesystem": "privilege_escalation", "process": "privilege_escalation",
    "undeclared_capability": "privilege_escalation", "insecure_temp_file": "privilege_escalation",
}


def _text(maximum: int, **kwargs):
    return ma.fields.String(validate=ma.validate.Length(max=maximum), **kwargs)


def _name(maximum: int, **kwargs):
    return ma.fields.String(validate=ma.validate.Length(min=1, max=maximum), **kwargs)


class OpenSchema(ma.Schema):
    """An object that keeps the keys it does not name, each a bounded JSON value (as documented)."""

    class Meta:
        unknown = ma.INCLUDE
        openapi = {"additionalProperties": {"$ref": JSON_VALUE}}

    @ma.validates_schema(pass_original=True)
    def bounded_values(self, data, original_data, **kwargs):
        if isinstance(original_data, dict):
            JsonValue().deserialize(original_data)


class ReviewMetadataSchema(ma.Schema):
    description = _text(MAX_TEXT, load_default="")
    author = _text(MAX_NAME, load_default="")
    permissions = ma.fields.List(_name(64), load_default=list, validate=ma.validate.Length(max=64))


class ReviewProviderSchema(OpenSchema):
    name = _name(MAX_NAME, required=True)
    public_key_url = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=2000))


class ReviewToolSchemaSchema(OpenSchema):
    type = ma.fields.String(load_default="object")
    properties = ma.fields.Dict(keys=ma.fields.String(), values=JsonValue(), load_default=dict)
    required = ma.fields.List(ma.fields.String(), load_default=list)


class ReviewToolSchema(OpenSchema):
    """The SDK's tool: a schema to review instead of source code."""

    class Meta(OpenSchema.Meta):
        openapi = {"anyOf": [{"required": ["tool_schema"]}, {"required": ["schema"]}],
                   "additionalProperties": {"$ref": JSON_VALUE}}

    name = _name(MAX_NAME, required=True)
    description = _text(MAX_TEXT, required=True)
    version = _name(MAX_VERSION)
    tool_schema = ma.fields.Nested(ReviewToolSchemaSchema)
    schema = ma.fields.Nested(ReviewToolSchemaSchema)
    provider = ma.fields.Nested(ReviewProviderSchema, required=True)

    @ma.validates_schema
    def has_schema(self, data, **kwargs):
        if "tool_schema" not in data and "schema" not in data:
            raise ma.ValidationError("Missing data for required field.", field_name="tool_schema")


class SubmitSchema(ma.Schema):
    """The reference's source submission, or the SDK's ``{tool, submitted_by, priority}``."""

    class Meta:
        # With ``tool`` it is the SDK's shape, whatever else it carries.
        openapi = {"oneOf": [{"required": ["tool_name", "tool_version", "source_code"], "not": {"required": ["tool"]}},
                             {"required": ["tool", "submitted_by"]}]}

    tool_name = _name(MAX_NAME)
    tool_version = _name(MAX_VERSION)
    source_code = ma.fields.String(validate=ma.validate.Regexp(r"^\s*\S", error="must not be blank"),
                                   metadata={"description": "The tool's source; at most [review] max_source_bytes"})
    metadata = ma.fields.Nested(ReviewMetadataSchema, load_default=dict)
    language = ma.fields.String(validate=ma.validate.OneOf(LANGUAGES), load_default=None,
                                metadata={"description": "Detected from the code when not given"})
    tool = ma.fields.Nested(ReviewToolSchema)
    submitted_by = _name(MAX_NAME)
    priority = ma.fields.String(validate=ma.validate.OneOf(("low", "normal", "high", "critical")))

    @ma.validates_schema
    def one_shape(self, data, **kwargs):
        if "tool" in data:
            if not data.get("submitted_by"):
                raise ma.ValidationError("Missing data for required field.", field_name="submitted_by")
            return
        for name in ("source_code", "tool_name", "tool_version"):
            if name not in data:
                raise ma.ValidationError("Missing data for required field.", field_name=name)


class ListQuerySchema(ma.Schema):
    page = ma.fields.Integer(load_default=1, validate=ma.validate.Range(min=1, max=1_000_000))
    limit = ma.fields.Integer(load_default=20, validate=ma.validate.Range(min=1, max=MAX_PAGE_LIMIT))
    status = ma.fields.String(load_default=None, validate=ma.validate.OneOf(STATUS_FILTERS),
                              metadata={"description": "The SDK's status or the workflow's state"})
    author = ma.fields.String(load_default=None, validate=ma.validate.Length(max=MAX_NAME))


class DecisionSchema(ma.Schema):
    decision = ma.fields.String(required=True, validate=ma.validate.OneOf(tuple(service.DECISIONS)))
    comments = _text(MAX_TEXT, load_default=None, allow_none=True)
    conditions = ma.fields.List(_text(1000), load_default=list, validate=ma.validate.Length(max=50))
    reviewer_id = _name(MAX_NAME, required=True)


class SignRequestSchema(ma.Schema):
    review_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=36))
    signing_key_id = _text(MAX_NAME, load_default=None,
                           metadata={"description": "Advisory: Lockgate signs with its current key and names it"})


class ReviewAnswer(ma.Schema):
    """An answer in the reference's shape with the SDK's fields beside it (docs/review.md, "API").

    The views below build it; dumping passes it through, as it is already in its API form.
    """

    class Meta:
        openapi = {"additionalProperties": True}

    def dump(self, obj, *, many=None):
        return obj


# ---- views: a row as the API shows it ----------------------------------------------------


def tool_view(row: ReviewSession) -> dict:
    tool = workflow.tool_schema_of(row)
    schema = tool.get("schema") or tool.get("tool_schema") or {"type": "object", "properties": {}, "required": []}
    return {**tool, "schema": schema, "tool_schema": schema}


def sdk_finding(finding: dict) -> dict:
    return {**finding, "severity": finding["severity"] if finding["severity"] != "info" else "low",
            "category": SDK_CATEGORIES.get(finding["category"], "malicious_code"),
            "vulnerability_category": finding["category"]}


def created_view(row: ReviewSession) -> dict:
    created = iso(row.created_at)
    return {"review_id": row.id, "status": "submitted", "created_at": created, "submitted_at": created,
            "estimated_completion": iso(service.estimated_completion(row))}


def session_summary(row: ReviewSession, analysis: ReviewAnalysis | None) -> dict:
    findings = json.loads(analysis.findings) if analysis else []
    critical = [sdk_finding(f) for f in findings if f["severity"] == "critical"]
    return {
        "review_id": row.id,
        "tool_name": row.tool_name,
        "tool_version": row.tool_version,
        "status": service.SDK_STATUS[row.status],
        "workflow_status": row.status,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "tool": tool_view(row),
        "state": {"type": row.status, "analysis_id": row.analysis_id,
                  "analysis_completed_at": iso(analysis.completed_at) if analysis else None,
                  "critical_findings": critical, "human_reviewer_id": row.reviewer_id or row.assigned_to,
                  "review_started_at": iso(row.escalated_at)},
        "submitted_by": row.submitted_by or row.author,
        "submitted_at": iso(row.created_at),
        "estimated_completion": iso(service.estimated_completion(row)),
        "priority": row.priority or row.requested_priority,
        "author": row.author,
        "risk_score": row.risk_score,
        "analysis_id": row.analysis_id,
        "previous_review_id": row.previous_id,
    }


def session_view(row: ReviewSession, analysis: ReviewAnalysis | None) -> dict:
    view = session_summary(row, analysis)
    view["language"] = row.language
    view["metadata"] = {"description": row.description, "author": row.author,
                        "permissions": json.loads(row.permissions)}
    view["analysis_results"] = None if analysis is None else {
        "risk_score": analysis.risk_score, "findings": json.loads(analysis.findings),
        "recommendations": json.loads(analysis.recommendations)}
    if row.decision is not None:
        view["decision"] = {"decision": row.decision, "comments": row.comments,
                            "conditions": json.loads(row.conditions), "reviewer_id": row.reviewer_id,
                            "automatic": bool(row.auto_approved), "decided_at": iso(row.decided_at)}
    if row.status in (REJECTED, CHANGES_REQUESTED):
        view["state"]["type"] = row.status
    view["signing_status"] = service.signing_status(row)
    return view


def list_view(rows, total: int, page: int, limit: int, analyses: dict) -> dict:
    return {"sessions": [session_summary(row, analyses.get(row.id)) for row in rows],
            "pagination": {"page": page, "limit": limit, "total": total, "has_next": page * limit < total}}


def analysis_view(analysis: ReviewAnalysis, kind: str) -> dict:
    findings = json.loads(analysis.findings)
    if kind == "schema":
        findings = [sdk_finding(f) for f in findings]
    return {"analysis_id": analysis.id, "review_id": analysis.review_id, "risk_score": analysis.risk_score,
            "analysis_type": "automated", "language": analysis.language, "findings": findings,
            "recommendations": json.loads(analysis.recommendations),
            "rag_insights": json.loads(analysis.rag_insights), "stats": json.loads(analysis.stats),
            "error": analysis.error, "started_at": iso(analysis.started_at),
            "completed_at": iso(analysis.completed_at)}


def queue_view(rows, stats: dict) -> dict:
    return {"pending_reviews": [{"review_id": row.id, "tool_name": row.tool_name, "tool_version": row.tool_version,
                                 "risk_score": row.risk_score, "priority": row.priority,
                                 "assigned_to": row.assigned_to, "escalated_at": iso(row.escalated_at)}
                                for row in rows],
            "queue_stats": stats}


def decision_view(row: ReviewSession, processed_at) -> dict:
    return {"review_id": row.id, "decision": row.decision, "processed_at": iso(processed_at),
            "next_status": row.status, "status": service.SDK_STATUS[row.status],
            "conditions": json.loads(row.conditions), "reviewer_id": row.reviewer_id}


def signing_view(row: ReviewSession, signature) -> dict:
    view = {"review_id": row.id, "signing_status": service.signing_status(row), "signature_info": None,
            "certificate_chain": [], "error": row.signing_error}
    if signature is not None:
        view["signature_info"] = {"algorithm": signature.algorithm, "key_id": signature.key_id,
                                  "signature": signature.signature, "signed_at": iso(signature.signed_at)}
        view["certificate_chain"] = json.loads(signature.certificate_chain)
        view["manifest"] = json.loads(signature.manifest)
        if signature.schemapin:
            pin = json.loads(signature.schemapin)
            view["signature_info"]["schemapin"] = {"algorithm": pin["algorithm"], "signature": pin["signature"],
                                                   "public_key_pem": pin["public_key_pem"]}
    return view


def sdk_signature_view(row: ReviewSession, signature) -> dict:
    return {"review_id": row.id, "signature": signature.signature, "signed_at": iso(signature.signed_at),
            "signer_id": signature.key_id, "signature_algorithm": signature.algorithm,
            "certificate_chain": json.loads(signature.certificate_chain)}


def signed_tool_view(row: ReviewSession, signature) -> dict:
    return {**sdk_signature_view(row, signature), "tool": tool_view(row)}
