"""Typed API errors and the one place they become ``{"error": {...}}`` responses."""

from __future__ import annotations

import logging
import time

from flask import current_app, g, has_request_context, jsonify, request
from playhouse.pool import MaxConnectionsExceeded
from werkzeug.exceptions import HTTPException

from app.core.db import first_line, is_conflict, is_outage
from app.core.redaction import mask_text, mask_values

log = logging.getLogger("http")

# Seconds a client is told to wait when the database is down; and between two
# warnings about it, so an outage does not flood the log with one line per request.
OUTAGE_RETRY_AFTER = 5
OUTAGE_LOG_INTERVAL = 10.0
_last_outage_log = 0.0


class ApiError(Exception):
    status = 500
    code = "internal_error"
    default_message = "Unexpected server error"

    def __init__(self, message: str | None = None, details=None, headers: dict | None = None):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.details = details
        self.headers = headers or {}


class BadRequest(ApiError):
    status, code, default_message = 400, "bad_request", "Invalid request"


class Unauthorized(ApiError):
    """Carries the RFC 6750 challenge; ``token_sent`` says the request's token was refused (bad, expired, revoked)."""

    status, code, default_message = 401, "unauthorized", "A valid bearer token is required"

    def __init__(self, message: str | None = None, details=None, headers: dict | None = None, token_sent=False):
        challenge = 'Bearer realm="lockgate"' + (', error="invalid_token"' if token_sent else "")
        super().__init__(message, details, {"WWW-Authenticate": challenge, **(headers or {})})


class Forbidden(ApiError):
    status, code, default_message = 403, "forbidden", "The token lacks the required scope"


class NotFound(ApiError):
    status, code, default_message = 404, "not_found", "Resource not found"


class MethodNotAllowed(ApiError):
    status, code, default_message = 405, "method_not_allowed", "Method not allowed"


class Conflict(ApiError):
    status, code, default_message = 409, "conflict", "Resource state conflict"


class PayloadTooLarge(ApiError):
    status, code, default_message = 413, "payload_too_large", "Request body too large"


class UnsupportedMediaType(ApiError):
    status, code, default_message = 415, "unsupported_media_type", "Unsupported media type"


class RateLimited(ApiError):
    status, code, default_message = 429, "rate_limited", "Too many requests"


class InternalError(ApiError):
    pass


class BadGateway(ApiError):
    status, code, default_message = 502, "provider_error", "Upstream provider failed"


class ServiceUnavailable(ApiError):
    status, code, default_message = 503, "service_unavailable", "Service unavailable"


HTTP_STATUS_ERRORS = {
    cls.status: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict,
                PayloadTooLarge, UnsupportedMediaType, RateLimited, ServiceUnavailable)
}


def error_response(error: ApiError):
    # A message or detail may quote input or stored values: URL passwords and tokens never leave.
    body = {"error": {"code": error_code(error), "message": mask_text(error.message),
                      "details": mask_values(error.details)}}
    response = jsonify(body)
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def error_code(error: ApiError) -> str:
    """The code an error shows: its own, or the word the request's blueprint uses for it.

    An API that follows another reference (the Symbiont one writes ``NOT_FOUND``)
    declares its vocabulary on its blueprint (``error_codes``: our code -> its
    code, ``"*"`` for any other); a path under its prefix that matches no route
    speaks it too.
    """
    vocabulary = _vocabulary() if has_request_context() else None
    if not vocabulary:
        return error.code
    return vocabulary.get(error.code) or vocabulary.get("*", error.code)


def _vocabulary():
    blueprints = current_app.blueprints
    if request.blueprint in blueprints:
        return getattr(blueprints[request.blueprint], "error_codes", None)
    path = request.path
    under = [blueprint for blueprint in blueprints.values()
             if getattr(blueprint, "error_codes", None) and blueprint.url_prefix
             and (path == blueprint.url_prefix or path.startswith(blueprint.url_prefix + "/"))]
    return max(under, key=lambda blueprint: len(blueprint.url_prefix)).error_codes if under else None


def from_http_exception(exc: HTTPException) -> ApiError:
    cls = HTTP_STATUS_ERRORS.get(exc.code)
    if cls is None:
        return InternalError() if (exc.code or 500) >= 500 else BadRequest(exc.description)
    if cls in (NotFound, MethodNotAllowed) and has_empty_segment(request.path):
        return empty_segment(request.path)
    if cls is NotFound:
        return NotFound("No such endpoint")
    if cls is MethodNotAllowed:
        allowed = sorted(getattr(exc, "valid_methods", None) or [])
        headers = {"Allow": ", ".join(allowed)} if allowed else None
        return MethodNotAllowed(details={"allowed": allowed} if allowed else None, headers=headers)
    if cls is PayloadTooLarge:
        return too_large(request.max_content_length)
    return cls()


def too_large(limit: int | None) -> PayloadTooLarge:
    """The 413 for a body over ``[gateway] max_body_bytes``, whether it had a Content-Length or was chunked."""
    if limit is None:
        return PayloadTooLarge()
    return PayloadTooLarge(f"Request body larger than {limit} bytes", details={"max_body_bytes": limit})


def handle_exception(exc: Exception):
    if isinstance(exc, ApiError):
        return error_response(exc)
    if isinstance(exc, HTTPException):
        return error_response(from_http_exception(exc))
    if isinstance(exc, MaxConnectionsExceeded):
        log.warning("database connection pool exhausted (request %s)", _request_id())
        return error_response(ServiceUnavailable("Too busy: no database connection free; retry shortly",
                                                 headers={"Retry-After": "1"}))
    if is_outage(exc):
        return error_response(outage(exc))
    if is_conflict(exc):
        return error_response(collided(exc))
    request_id = _request_id()
    log.exception("unhandled error (request %s)", request_id)
    return error_response(InternalError(f"Unexpected server error (request id {request_id})"))


def _request_id() -> str | None:
    return getattr(g.get("admission"), "request_id", None)


def has_empty_segment(path: str) -> bool:
    return path != "/" and "" in path.split("/")[1:]


def empty_segment(path: str) -> NotFound:
    # Usually a shell variable that was never set: ``/sessions/$SESSION_ID/messages``.
    return NotFound(f"The path {path} has an empty segment: is a variable in the URL unset, or a '/' doubled?",
                    details={"path": path, "reason": "empty path segment"})


def outage(exc: BaseException) -> ServiceUnavailable:
    """The 503 for a database that cannot serve; the first of a burst is logged at warn."""
    global _last_outage_log
    if time.monotonic() - _last_outage_log > OUTAGE_LOG_INTERVAL:
        _last_outage_log = time.monotonic()
        log.warning("database unavailable: %s", first_line(exc))
    return ServiceUnavailable("The database is unavailable; retry shortly",
                              headers={"Retry-After": str(OUTAGE_RETRY_AFTER)})


def collided(exc: BaseException) -> ServiceUnavailable:
    """The 503 for a transaction the database rolled back for a concurrent one: safe to send again.

    Logged as an error with its trace: a deadlock means two transactions take their rows in different
    orders, which is a defect to fix (each area documents its lock order).
    """
    log.error("transaction rolled back for a concurrent one (request %s): %s", _request_id(), first_line(exc),
              exc_info=exc)
    return ServiceUnavailable("The request collided with a concurrent one in the database and changed nothing; "
                              "send it again", headers={"Retry-After": "1"})


def register(app):
    # No route has an empty segment; without merging, such a path reaches the 404 above instead of
    # a redirect to another route (or its 405).
    app.url_map.merge_slashes = False
    app.register_error_handler(Exception, handle_exception)
