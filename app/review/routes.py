"""The Tool Review API under /api/v1/tool-review: every path of its reference, and the Symbiont SDK's beside them."""

from __future__ import annotations

import re

from flask import Response, current_app, request

from app.core.api import Blueprint, Parser
from app.core.errors import BadRequest
from app.review import schemas, service
from app.review.schemas import (
    DecisionSchema,
    ListQuerySchema,
    ReviewAnswer,
    SignRequestSchema,
    SubmitSchema,
)

# The reference's error codes (its "error handling" section).
SYMBIONT_CODES = {
    "bad_request": "INVALID_REQUEST", "payload_too_large": "INVALID_REQUEST",
    "unsupported_media_type": "INVALID_REQUEST", "method_not_allowed": "INVALID_REQUEST",
    "unauthorized": "UNAUTHORIZED", "forbidden": "FORBIDDEN", "not_found": "NOT_FOUND", "conflict": "CONFLICT",
    "rate_limited": "RATE_LIMITED", "*": "INTERNAL_ERROR",
}
MISSING = "Missing data for required field."
IN_FIELD = re.compile(r"\(in ([\w.\[\]-]{1,200})\)")
# JSON escapes (a newline is two characters, a control character six) make a body larger than its source.
BODY_OVERHEAD = 64 * 1024


class ReviewParser(Parser):
    """Validation errors as this API's reference writes them: ``details {field, reason}``."""

    def _raw_load_json(self, req):
        try:
            return super()._raw_load_json(req)
        except BadRequest as exc:
            # The JSON reader's bounds name the field they met in its message: "... (in source_code)".
            found = IN_FIELD.search(exc.message + " " + " ".join(map(str, (exc.details or {}).get("body", []))))
            raise BadRequest(exc.message, details={"field": found[1] if found else "body", "reason": "invalid_json",
                                                   "errors": exc.details}) from None

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        field, reason, text = _first(error.messages)
        if reason == "missing_required_field":
            message = f"{field.replace('_', ' ').capitalize()} is required"
        else:
            message = f"Invalid {field}: {text}"
        raise BadRequest(message, details={"field": field, "reason": reason, "errors": error.messages})


def _first(messages, prefix: str = "") -> tuple[str, str, str]:
    """The first failing field (dotted for nested ones), why, and its message."""
    if isinstance(messages, dict):
        for name in ("json", "query", "querystring"):
            if name in messages and len(messages) == 1:
                return _first(messages[name], prefix)
        name, inner = next(iter(messages.items()))
        if isinstance(inner, dict):
            return _first(inner, f"{prefix}{name}.")
        text = inner[0] if isinstance(inner, list) and inner else str(inner)
        if isinstance(text, dict):
            return _first(text, f"{prefix}{name}.")
        reason = ("missing_required_field" if text == MISSING else
                  "unknown_field" if text == "Unknown field." else "invalid_value")
        return f"{prefix}{name}", reason, str(text)
    return prefix.rstrip(".") or "body", "invalid_value", str(messages)


class ReviewBlueprint(Blueprint):
    ARGUMENTS_PARSER = ReviewParser()


blp = ReviewBlueprint("tool_review", __name__, url_prefix="/api/v1/tool-review",
                      description="Symbiont Tool Review: security analysis, human review, code signing",
                      rate_limits=("review_query", "review_submit"), error_codes=SYMBIONT_CODES)


def _settings():
    return current_app.extensions["lockgate"].settings


@blp.before_request
def room_for_source():
    """A submission may carry ``[review] max_source_bytes`` of source, whatever the gateway's body limit."""
    if request.method == "POST" and request.endpoint == "tool_review.submit":
        wanted = 2 * _settings().get("review.max_source_bytes") + BODY_OVERHEAD
        request.max_content_length = max(wanted, current_app.config.get("MAX_CONTENT_LENGTH") or 0)


@blp.route("/sessions", methods=["POST"])
@blp.arguments(SubmitSchema)
@blp.response(201, ReviewAnswer)
@blp.rate_limit("review_submit")
def submit(data):
    """Submit a tool for review: its source code (the reference) or its schema (the Symbiont SDK)."""
    if "tool" in data:
        row = service.submit_schema(data, _settings())
    else:
        row = service.submit_source(data, _settings())
    return schemas.created_view(row)


@blp.route("/sessions", methods=["GET"])
@blp.arguments(ListQuerySchema, location="query")
@blp.response(200, ReviewAnswer)
def list_sessions(query):
    """Reviews, newest first, a page at a time, by status (the SDK's or the workflow's) and author."""
    rows, total = service.list_sessions(query["page"], query["limit"], query["status"], query["author"])
    return schemas.list_view(rows, total, query["page"], query["limit"], service.analyses_of(rows))


@blp.route("/sessions/<review_id>", methods=["GET"])
@blp.response(200, ReviewAnswer)
def get_session(review_id):
    """One review: its tool, state, analysis results and decision."""
    row = service.get_session(review_id)
    return schemas.session_view(row, service.analysis_of(row))


@blp.route("/analysis/<analysis_id>", methods=["GET"])
@blp.response(200, ReviewAnswer)
def get_analysis(analysis_id):
    """An analysis: findings (with CWE, rule and snippet), knowledge-base insights, risk score."""
    analysis = service.get_analysis(analysis_id)
    return schemas.analysis_view(analysis, service.get_session(analysis.review_id).kind)


@blp.route("/review/queue", methods=["GET"])
@blp.response(200, ReviewAnswer)
def review_queue():
    """Reviews waiting for a person, high priority first, and the queue's figures."""
    rows, stats = service.queue()
    return schemas.queue_view(rows, stats)


def _decide(review_id, data):
    row, processed_at = service.decide(review_id, data["decision"], data["comments"], data["conditions"],
                                       data["reviewer_id"])
    return schemas.decision_view(row, processed_at)


@blp.route("/review/<review_id>/decision", methods=["POST"])
@blp.scope("review")
@blp.arguments(DecisionSchema)
@blp.response(200, ReviewAnswer)
@blp.error(409, "The review is not waiting for a person's decision")
def decision(data, review_id):
    """A reviewer's decision (needs the `review` scope); approval is followed by signing, with no further call."""
    return _decide(review_id, data)


@blp.route("/sessions/<review_id>/decisions", methods=["POST"])
@blp.scope("review")
@blp.arguments(DecisionSchema)
@blp.response(200, ReviewAnswer)
@blp.error(409, "The review is not waiting for a person's decision")
def sdk_decision(data, review_id):
    """The Symbiont SDK's path for a reviewer's decision: the same as POST /review/{reviewId}/decision."""
    return _decide(review_id, data)


@blp.route("/signing/<review_id>", methods=["GET"])
@blp.response(200, ReviewAnswer)
def signing_status(review_id):
    """Signing status, signature and certificate chain of a review."""
    row = service.get_session(review_id)
    return schemas.signing_view(row, service.signature_of(review_id))


@blp.route("/signing/<review_id>/download", methods=["GET"])
@blp.rate_limit("review_download")
@blp.response(200, description="The signed package (a tar: docs/review.md)",
              content_type="application/x-tar")
@blp.error(409, "The review is not signed yet")
def download(review_id):
    """The signed tool package: source, manifest, signature and certificate chain."""
    _row, signature = service.signed(review_id)
    return Response(bytes(signature.package), mimetype="application/x-tar",
                    headers={"Content-Disposition": f'attachment; filename="{signature.package_name}"'})


@blp.route("/sign", methods=["POST"])
@blp.arguments(SignRequestSchema)
@blp.response(200, ReviewAnswer)
@blp.error(409, "The review is not approved")
def sign(data):
    """The Symbiont SDK's signing request: signs an approved review now; a signed one answers its signature."""
    row, signature = service.sign_now(data["review_id"], _settings())
    return schemas.sdk_signature_view(row, signature)


@blp.route("/signed/<review_id>", methods=["GET"])
@blp.response(200, ReviewAnswer)
@blp.error(409, "The review is not signed yet")
def signed_tool(review_id):
    """The Symbiont SDK's signed tool: the tool and its signature."""
    row, signature = service.signed(review_id)
    return schemas.signed_tool_view(row, signature)


@blp.route("/stats", methods=["GET"])
@blp.response(200, ReviewAnswer)
def stats():
    """Workflow, performance and security figures, counted by the database."""
    return service.stats(_settings())
