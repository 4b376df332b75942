"""Project subclasses of flask-smorest's Api and Blueprint.

Validation errors become 400 ``bad_request`` with the failing fields in
``details``; every route declares the scope it needs (or that it is public),
and that declaration is also what the OpenAPI document shows.
"""

from __future__ import annotations

import marshmallow as ma
from flask import request
from flask_smorest import Api as BaseApi
from flask_smorest import Blueprint as BaseBlueprint
from webargs.flaskparser import FlaskParser

from app.core.errors import BadRequest, error_response, from_http_exception

SCOPES = ("read", "write", "admin")


class ErrorBodySchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"example": "not_found"})
    message = ma.fields.String(required=True)
    details = ma.fields.Raw(allow_none=True)


class ErrorSchema(ma.Schema):
    error = ma.fields.Nested(ErrorBodySchema, required=True)


class Parser(FlaskParser):
    DEFAULT_VALIDATION_STATUS = 400

    def _raw_load_json(self, req):
        if req.get_data(cache=True) and not req.is_json:
            raise BadRequest("Request body must be JSON (Content-Type: application/json)")
        return super()._raw_load_json(req)

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        raise BadRequest("Request body is not valid JSON", details={"body": [str(error)]})

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        details = error.messages
        if isinstance(details, dict) and len(details) == 1:
            (only,) = details.values()
            details = only if isinstance(only, dict) else details
        raise BadRequest("Request validation failed", details=details)


class Blueprint(BaseBlueprint):
    ARGUMENTS_PARSER = Parser()

    @staticmethod
    def scope(name: str):
        """Require a scope; recorded on the view for the auth check and the docs."""
        if name not in SCOPES:
            raise ValueError(name)

        def decorator(view):
            view._lockgate_scope = name
            view._apidoc = getattr(view, "_apidoc", {})
            view._apidoc.setdefault("manual_doc", {})["security"] = [{"bearerAuth": []}]
            return view

        return decorator

    @staticmethod
    def public(view):
        view._lockgate_scope = None
        view._apidoc = getattr(view, "_apidoc", {})
        view._apidoc.setdefault("manual_doc", {})["security"] = []
        return view


def required_scope(view, method: str) -> str | None:
    """The scope a request needs: declared on the view, else read for GET and write otherwise."""
    if hasattr(view, "_lockgate_scope"):
        return view._lockgate_scope
    view_class = getattr(view, "view_class", None)
    handler = getattr(view_class, method.lower(), None) if view_class else None
    if handler is not None and hasattr(handler, "_lockgate_scope"):
        return handler._lockgate_scope
    return "read" if method in ("GET", "HEAD", "OPTIONS") else "write"


class Api(BaseApi):
    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error):
        return error_response(from_http_exception(error))

    def _register_error_handlers(self):
        # The application registers one handler for every exception (core.errors).
        pass


def api_config(version: str) -> dict:
    return {
        "API_TITLE": "Lockgate",
        "API_VERSION": version,
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api/v1",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "docs",
        "OPENAPI_SWAGGER_UI_URL": "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/",
        "API_SPEC_OPTIONS": {
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer"},
                }
            },
            "security": [{"bearerAuth": []}],
            "info": {
                "description": "Control plane for AI agents: gateway, runtime and tool review APIs. "
                "Scopes: read (GET), write (create/change/delete), admin (everything).",
            },
        },
    }


def is_api_docs_request() -> bool:
    return request.path in ("/api/v1/openapi.json", "/api/v1/docs", "/api/v1/docs/")

