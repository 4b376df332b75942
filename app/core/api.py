"""Project subclasses of flask-smorest's Api and Blueprint.

Validation errors become 400 ``bad_request`` with the failing fields in
``details``; every route declares the scope it needs (or that it is public),
and that declaration is also what the OpenAPI document shows.

The document is derived from the same declarations the request pipeline
obeys, so no route can forget its part of it: each operation gets a stable
``operationId`` (``<blueprint>.<function>``) and the error responses the
pipeline can give it (401/403 unless public, 404 with path parameters, 413
with a body, 429 and 503 always), each with the error envelope. A schema's
``Meta.openapi`` adds what marshmallow cannot say (``minProperties``), and a
field's ``choices_from`` lists values that come from the configuration.
Swagger UI is served from the installed ``swagger-ui-bundle``, so the docs
page works without internet.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import marshmallow as ma
import swagger_ui_bundle
from apispec.ext.marshmallow import MarshmallowPlugin, OpenAPIConverter
from flask import current_app, send_from_directory
from flask.views import MethodView
from flask_smorest import Api as BaseApi
from flask_smorest import Blueprint as BaseBlueprint
from webargs.core import missing
from webargs.flaskparser import FlaskParser

from app.core import jsonbody
from app.core.auth import SCOPES
from app.core.errors import BadRequest, error_response, from_http_exception
from app.core.schema import JSON_VALUE, JSON_VALUE_DOC, JsonValue

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
DEFAULT_RATE_GROUP = "default"
OPERATION_INFO = "lockgate_operation"
DOCS_PATH = "docs"
SWAGGER_UI_ASSETS = f"/api/v1/{DOCS_PATH}/assets/"


class ErrorBodySchema(ma.Schema):
    code = ma.fields.String(required=True, metadata={"example": "not_found"})
    message = ma.fields.String(required=True)
    details = ma.fields.Raw(allow_none=True)


class ErrorSchema(ma.Schema):
    error = ma.fields.Nested(ErrorBodySchema, required=True)


@functools.cache
def _schema_instance(schema_class: type[ma.Schema]) -> ma.Schema:
    return schema_class()


class Parser(FlaskParser):
    """Request bodies through ``app.core.jsonbody``: its bounds, and 413 for oversized chunked bodies."""

    DEFAULT_VALIDATION_STATUS = 400
    # A query parameter the route does not take is refused like an unknown body field, as the document says.
    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
                                   "query": ma.RAISE, "querystring": ma.RAISE}

    def _get_schema(self, argmap, req):
        # A schema is stateless once built, and building one per request is a cost every route paid.
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            return _schema_instance(argmap)
        return super()._get_schema(argmap, req)

    def _raw_load_json(self, req):
        data = jsonbody.request_body(req)
        if not data:
            return missing
        if not req.is_json:
            raise BadRequest("Request body must be JSON (Content-Type: application/json)")
        try:
            return jsonbody.loads(data)
        except jsonbody.InvalidJson as exc:
            raise BadRequest("Request body is not valid JSON", details={"body": [str(exc)]}) from None

    def load_querystring(self, req, schema):
        # The document gives each parameter one value: ?channel=a&channel=b must not quietly mean a.
        singles = {field.data_key or name for name, field in schema.fields.items()
                   if not isinstance(field, ma.fields.List)}
        repeated = sorted(name for name, values in req.args.lists() if name in singles and len(values) > 1)
        if repeated:
            raise BadRequest("Query parameter given more than once",
                             details={name: ["give it once"] for name in repeated})
        return super().load_querystring(req, schema)

    def handle_error(self, error, req, schema, *, error_status_code, error_headers):
        details = error.messages
        if isinstance(details, dict) and len(details) == 1:
            (only,) = details.values()
            details = only if isinstance(only, dict) else details
        raise BadRequest("Request validation failed", details=details)


class Blueprint(BaseBlueprint):
    """A blueprint whose routes declare their scope and their rate-limit group.

    ``rate_limits`` names the ``[rate_limits]`` keys of the blueprint's reads and
    writes (a route may override with ``@blp.rate_limit``); unknown paths and
    methods under its prefix count against the same groups. ``error_codes``
    renames the error codes of its answers (``{"not_found": "NOT_FOUND", "*": ...}``).
    """

    ARGUMENTS_PARSER = Parser()

    def __init__(self, *args, rate_limits: tuple[str, str] = (DEFAULT_RATE_GROUP, DEFAULT_RATE_GROUP),
                 error_codes: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.rate_limits = rate_limits
        # The error codes its answers show, when its API's reference names them otherwise (app.core.errors).
        self.error_codes = error_codes
        # After flask-smorest's own callbacks: it completes the operation they built.
        self._prepare_doc_cbks.append(self._prepare_operation_doc)

    def error(self, status: int, description: str):
        """Document an error this route gives besides those every route gets (409 or 502, say)."""
        return self.alt_response(status, schema=ErrorSchema, description=description)

    def _store_endpoint_docs(self, endpoint, obj, parameters, tags, **options):
        super()._store_endpoint_docs(endpoint, obj, parameters, tags, **options)
        for method, doc in self._docs[endpoint].items():
            if method == "parameters":
                continue
            handler, name = obj, getattr(obj, "__name__", endpoint)
            if isinstance(obj, type) and issubclass(obj, MethodView):
                handler, name = getattr(obj, method), f"{name}.{method}"
            doc[OPERATION_INFO] = {"id": f"{self.name}.{name}", "endpoint": endpoint,
                                   "scope": required_scope(handler, method.upper())}

    def _prepare_operation_doc(self, doc, doc_info, *, app, **kwargs):
        info = doc_info.get(OPERATION_INFO)
        if info is None:
            return doc
        doc["operationId"] = info["id"]
        rule = next(app.url_map.iter_rules(f"{self.name}.{info['endpoint']}"))
        manual = doc_info.get("manual_doc", {})  # merged after these callbacks: @blp.doc(requestBody=...)
        has_body = "requestBody" in doc or "requestBody" in manual
        has_query = bool(doc.get("parameters") or manual.get("parameters"))
        errors = error_responses(info["scope"], arguments=has_body or has_query, body=has_body,
                                 path=bool(rule.arguments))
        responses = doc.setdefault("responses", {})
        for status, response in errors.items():
            # A bare name is flask-smorest's generic response for the status; a route's own wins.
            if not isinstance(responses.get(status), dict):
                responses[status] = response
        return doc

    def rate_group(self, view, method: str) -> str:
        declared = getattr(view, "_lockgate_rate_group", None) if view is not None else None
        if declared is not None:
            return declared
        reads, writes = self.rate_limits
        return reads if method in SAFE_METHODS else writes

    @staticmethod
    def rate_limit(group: str):
        """Count this route against ``[rate_limits] <group>``."""

        def decorator(view):
            view._lockgate_rate_group = group
            return view

        return decorator

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
    def direct(handler):
        """Answer a plain GET of this route without Flask's request machinery (``app.core.direct``).

        ``handler(state)`` returns ``(body, status)`` and must only read: when it
        raises, the request is served again through this Flask view.
        """

        @functools.wraps(handler)
        def view():
            body, status = handler(current_app.extensions["lockgate"])
            return current_app.json.response(body), status

        view._lockgate_direct = handler
        return view

    @staticmethod
    def public(view):
        view._lockgate_scope = None
        view._apidoc = getattr(view, "_apidoc", {})
        view._apidoc.setdefault("manual_doc", {})["security"] = []
        return view


def _error_response(description: str, **headers: str) -> dict:
    response = {"description": description, "content": {"application/json": {"schema": ErrorSchema}}}
    if headers:
        response["headers"] = {name: {"description": text, "schema": {"type": "string"}}
                               for name, text in headers.items()}
    return response


RETRY_AFTER = "Seconds to wait before retrying"


def error_responses(scope: str | None, *, arguments: bool, body: bool, path: bool) -> dict[int, dict]:
    """The errors the request pipeline can give an operation, whatever its route does."""
    responses = {
        400: _error_response("Invalid arguments or body: `details` names each field and what is wrong"
                             if arguments else "The URL is not valid UTF-8 or contains NUL"),
    }
    if scope is not None:
        responses[401] = _error_response("No valid bearer token: missing, malformed, expired or revoked",
                                         **{"WWW-Authenticate": 'Bearer realm="lockgate", with '
                                                                'error="invalid_token" when a token was refused'})
        responses[403] = _error_response(f"The token lacks the `{scope}` scope")
    if path:
        responses[404] = _error_response("Nothing exists at this path: `details` says what was looked for")
    if body:
        responses[413] = _error_response("The body is larger than `gateway.max_body_bytes`")
    responses[429] = _error_response(
        "Rate limit of this route's group exceeded (or, for a stream, too many open streams for the token)",
        **{"Retry-After": RETRY_AFTER, "X-RateLimit-Limit": "Requests allowed per period",
           "X-RateLimit-Remaining": "Requests left in this period", "X-RateLimit-Reset": "Seconds until it resets"})
    responses[503] = _error_response("The database or the rate-limit storage is unavailable, or the database "
                                     "rolled the request back for a concurrent one (it changed nothing)", **{
        "Retry-After": RETRY_AFTER})
    return responses


def event_stream(description: str, events: dict[str, str]) -> dict:
    """The ``text/event-stream`` content of an SSE response, for ``@blp.doc``.

    OpenAPI 3.0 has no schema for the items of a stream; by the convention
    3.2 made official (``itemSchema``), ``schema`` here describes one event as
    an ``EventSource`` client receives it: its ``event`` name, its ``data``
    (JSON, described per event) and, where the stream can be resumed, its ``id``.
    """
    return {"text/event-stream": {"schema": {
        "type": "object",
        "description": description,
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": list(events), "description": "The event's name"},
            "data": {"type": "string", "description": "One JSON document: "
                     + "; ".join(f"`{name}`: {what}" for name, what in events.items())},
            "id": {"type": "string", "pattern": "^[0-9]+$",
                   "description": "Sent back as `Last-Event-ID` to resume after this event"},
            "retry": {"type": "integer", "minimum": 0, "description": "Reconnection delay in milliseconds"},
        },
    }}}


def required_scope(view, method: str) -> str | None:
    """The scope a request needs: declared on the view, else read for GET and write otherwise."""
    if hasattr(view, "_lockgate_scope"):
        return view._lockgate_scope
    view_class = getattr(view, "view_class", None)
    handler = getattr(view_class, method.lower(), None) if view_class else None
    if handler is not None and hasattr(handler, "_lockgate_scope"):
        return handler._lockgate_scope
    return "read" if method in SAFE_METHODS else "write"


@dataclass(frozen=True)
class RoutePolicy:
    """What the request pipeline needs to know about a route: its rate-limit group and scope (None: public)."""

    rate_group: str
    scope: str | None


def route_policy(app, endpoint: str | None, path: str, method: str) -> RoutePolicy:
    """The policy of a request, worked out once per route and method (unknown paths each time)."""
    if endpoint is None:
        return RoutePolicy(rate_group(app, None, path, method), None)
    known = app.extensions.setdefault("lockgate.route_policies", {})
    policy = known.get((endpoint, method))
    if policy is None:
        public = endpoint.startswith("api-docs.")
        scope = None if public else required_scope(app.view_functions[endpoint], method)
        policy = known[(endpoint, method)] = RoutePolicy(rate_group(app, endpoint, path, method), scope)
    return policy


def rate_group(app, endpoint: str | None, path: str, method: str) -> str:
    """The rate-limit group of a request: its route's declaration, else its blueprint's by prefix."""
    if endpoint is not None:
        blueprint = app.blueprints.get(endpoint.rpartition(".")[0])
        view = app.view_functions.get(endpoint)
    else:
        blueprint, view = _blueprint_by_prefix(app, path), None
    if isinstance(blueprint, Blueprint):
        return blueprint.rate_group(view, method)
    return DEFAULT_RATE_GROUP


def _blueprint_by_prefix(app, path: str):
    """The area blueprint with the longest prefix the path is under (the docs blueprint is not one)."""
    under = [blueprint for blueprint in app.blueprints.values()
             if isinstance(blueprint, Blueprint) and blueprint.url_prefix
             and (path == blueprint.url_prefix or path.startswith(blueprint.url_prefix + "/"))]
    return max(under, key=lambda blueprint: len(blueprint.url_prefix), default=None)


class Converter(OpenAPIConverter):
    """Schemas as apispec converts them, plus their ``Meta.openapi`` (what fields cannot say, e.g. minProperties)."""

    def schema2jsonschema(self, schema):
        jsonschema = super().schema2jsonschema(schema)
        jsonschema.update(getattr(getattr(schema, "Meta", None), "openapi", {}))
        return jsonschema


class Plugin(MarshmallowPlugin):
    Converter = Converter


def _json_value(converter, field, **kwargs):
    return {"$ref": JSON_VALUE} if isinstance(field, JsonValue) else {}


def _choices_from(app):
    """``metadata={"choices_from": fn}``: the field's enum is ``fn(settings)``, read when the document is built."""

    def attribute(converter, field, **kwargs):
        source = field.metadata.get("choices_from")
        return {"enum": list(source(app.extensions["lockgate"].settings))} if source else {}

    return attribute


def _swagger_ui_asset(filename: str):
    return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename, max_age=86_400)


class Api(BaseApi):
    ERROR_SCHEMA = ErrorSchema

    def _init_spec(self, **kwargs):
        kwargs.setdefault("marshmallow_plugin", Plugin())
        super()._init_spec(**kwargs)
        self.spec.components.schema("JsonValue", JSON_VALUE_DOC)
        self.ma_plugin.converter.add_attribute_function(_choices_from(self._app))
        self.ma_plugin.converter.add_attribute_function(_json_value)

    def _register_swagger_ui_rule(self, blueprint):
        super()._register_swagger_ui_rule(blueprint)
        # Public like the page itself (the docs blueprint); the page loads them from SWAGGER_UI_ASSETS.
        blueprint.add_url_rule(f"/{DOCS_PATH}/assets/<path:filename>", endpoint="swagger_ui_assets",
                               view_func=_swagger_ui_asset)

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
        "OPENAPI_SWAGGER_UI_PATH": DOCS_PATH,
        "OPENAPI_SWAGGER_UI_URL": SWAGGER_UI_ASSETS,
        "OPENAPI_SWAGGER_UI_CONFIG": {"displayOperationId": True},
        "API_SPEC_OPTIONS": {
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer"},
                }
            },
            "security": [{"bearerAuth": []}],
            "info": {
                "description": "Control plane for AI agents: gateway, runtime and tool review APIs. "
                "Scopes: read (GET), write (create/change/delete), review (tool review decisions, and read), "
                "admin (everything).",
            },
        },
    }


