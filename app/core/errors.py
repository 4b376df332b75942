"""Typed API errors and the one place they become ``{"error": {...}}`` responses."""

from __future__ import annotations

import logging

from flask import g, jsonify
from playhouse.pool import MaxConnectionsExceeded
from werkzeug.exceptions import HTTPException

log = logging.getLogger("http")


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
    status, code, default_message = 401, "unauthorized", "A valid bearer token is required"


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
    status, code, default_message = 503, "unavailable", "Service unavailable"


HTTP_STATUS_ERRORS = {
    cls.status: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict,
                PayloadTooLarge, UnsupportedMediaType, RateLimited, ServiceUnavailable)
}


def error_response(error: ApiError):
    body = {"error": {"code": error.code, "message": error.message, "details": error.details}}
    response = jsonify(body)
    response.status_code = error.status
    response.headers.update(error.headers)
    return response


def from_http_exception(exc: HTTPException) -> ApiError:
    cls = HTTP_STATUS_ERRORS.get(exc.code)
    if cls is None:
        return InternalError() if (exc.code or 500) >= 500 else BadRequest(exc.description)
    data = getattr(exc, "data", None) or {}
    if cls is BadRequest and "messages" in data:
        return BadRequest("Request validation failed", details=_flatten(data["messages"]))
    if cls is NotFound:
        return NotFound("No such endpoint")
    if cls is MethodNotAllowed:
        allowed = sorted(getattr(exc, "valid_methods", None) or [])
        headers = {"Allow": ", ".join(allowed)} if allowed else None
        return MethodNotAllowed(details={"allowed": allowed} if allowed else None, headers=headers)
    if cls is PayloadTooLarge:
        return PayloadTooLarge()
    return cls()


def _flatten(messages: dict) -> dict:
    """webargs nests errors by location ({"json": {...}}); clients want the fields."""
    if len(messages) == 1:
        (only,) = messages.values()
        if isinstance(only, dict):
            return only
    return messages


def handle_exception(exc: Exception):
    if isinstance(exc, ApiError):
        return error_response(exc)
    if isinstance(exc, HTTPException):
        return error_response(from_http_exception(exc))
    if isinstance(exc, MaxConnectionsExceeded):
        log.warning("database connection pool exhausted (request %s)", g.get("request_id"))
        return error_response(ServiceUnavailable("Too busy: no database connection free; retry shortly",
                                                 headers={"Retry-After": "1"}))
    request_id = getattr(g, "request_id", None)
    log.exception("unhandled error (request %s)", request_id)
    return error_response(InternalError(f"Unexpected server error (request id {request_id})"))


def register(app):
    app.register_error_handler(Exception, handle_exception)
