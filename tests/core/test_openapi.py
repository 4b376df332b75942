"""The OpenAPI document describes the API as it answers, and the API refuses what it forbids.

The document's completeness is checked operation by operation; then
schemathesis runs every check over every operation.

Each operation runs on a fresh app (the PATCH /config examples must not
reconfigure the app the other operations run on) with an admin token. Nothing
leaves loopback: every URL in a generated body (webhook targets, a provider's
base URL) is pinned to a local receiver before the request is sent, and
private targets are allowed so that the receiver is a valid hook target.
"""

from __future__ import annotations

import json
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from app.hooks.schemas import URL_PATTERN
from app.hooks.targets import MAX_URL_LENGTH
from app.runtime.dsl import DslSyntaxError, parse
from app.runtime.schemas import DSL_FORMAT
from tests.hooks.receiver import Receiver

URL = re.compile(URL_PATTERN)
NAMES = st.from_regex(r"\A[a-z][a-z0-9_]{0,30}\Z")
# Strings of the documented "symbiont-dsl" format: programs that parse (no JSON schema can say which do).
DSL_PROGRAMS = st.builds(
    lambda name, capabilities, timeout: (f"agent {name}() {{\n  capabilities = {json.dumps(capabilities)}\n"
                                         f"  with timeout = {timeout}.seconds {{ return true; }}\n}}\n"),
    NAMES, st.lists(NAMES, max_size=4), st.integers(min_value=1, max_value=300))
schemathesis.openapi.format(DSL_FORMAT, DSL_PROGRAMS)
MAX_EXAMPLES = 15
STREAM_READ_SECS = 0.5


@pytest.fixture(scope="module")
def receiver():
    with Receiver() as running:
        yield running


def fresh_app(app_factory, receiver):
    """An app with its own configuration file and an admin token."""
    from app.core.auth import create_token
    from app.core.db import connection
    from app.core.settings import SCHEMA

    # Every group relaxed: a 429 would hide what the examples are about (an unauthenticated one should get 401).
    limits = {key: "100000/s" for key, field in SCHEMA["rate_limits"].items() if field.kind == "limit"}
    app = app_factory({
        "rate_limits": limits,
        "hooks": {"allow_private_targets": True},
        "provider": {"base_url": f"{receiver.url}/provider"},
        "logs": {"heartbeat_secs": 0.2},
        # Room for the largest schema-valid body (100,000 characters of \\uXXXX escapes), so no valid one gets 413.
        "gateway": {"max_body_bytes": 8 * 1024 * 1024},
    })
    with connection():
        token = create_token("openapi", ["admin"])[1]
    return app, token


def parses_as_dsl(body) -> bool:
    source = body.get("dsl") if isinstance(body, dict) else None
    if not isinstance(source, str):
        return True
    try:
        parse(source)
    except DslSyntaxError:
        return False
    return True


def pin_urls(value, target: str):
    """The body with every string the document would take as a URL replaced by one on the loopback receiver."""
    if isinstance(value, dict):
        return {key: pin_urls(item, target) for key, item in value.items()}
    if isinstance(value, list):
        return [pin_urls(item, target) for item in value]
    if isinstance(value, str) and URL.match(value) and len(value) <= MAX_URL_LENGTH:
        return target
    return value


def exercise(operation, mode, app, token, receiver) -> None:
    """Up to MAX_EXAMPLES generated requests of one mode to one operation, each response checked."""
    config = app.extensions["lockgate"].settings.path
    original = config.read_text()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        # A query value of [] or {} is sent as nothing: such a "negative" request is a valid one.
        assume(mode is GenerationMode.POSITIVE or not any(
            value in ([], {}) for value in (case.query or {}).values()))
        # A string of the "symbiont-dsl" format is valid only if it parses; JSON Schema cannot say so, and
        # schemathesis sometimes fills such a field from the document's other strings instead of the format.
        assume(mode is not GenerationMode.POSITIVE or parses_as_dsl(case.body))
        # Every example starts from the test's configuration: PATCH /config examples change it.
        if config.read_text() != original:
            config.write_text(original)
        if isinstance(case.body, (dict, list)):
            case.body = pin_urls(case.body, f"{receiver.url}/hook")
        response = case.call(headers={"Authorization": f"Bearer {token}"}, app=app)
        # Before the checks, some of which send requests of their own (without a token, say).
        if config.read_text() != original:
            config.write_text(original)
        case.validate_response(response, headers={"Authorization": f"Bearer {token}"}, transport_kwargs={"app": app})

    run()


def test_every_operation_answers_as_documented(app_factory, receiver):
    app, token = fresh_app(app_factory, receiver)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    # OpenAPI 3.0 cannot say "no U+0000 in object keys", which the JSON body parser refuses (app.core.jsonbody).
    schema.config.generation.update(allow_x00=False)
    # Streams never end by themselves: read each for half a second (heartbeats keep it moving).
    schema.config.update(request_timeout=STREAM_READ_SECS)
    failures, exercised = {}, []
    for result in schema.get_all_operations():
        operation = result.ok()
        exercised.append(operation.definition.raw["operationId"])
        # Its own app: PATCH /config examples must not reconfigure the app other operations run on.
        app, token = fresh_app(app_factory, receiver)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                exercise(operation, mode, app, token, receiver)
            except Unsatisfiable:
                # Only a negative run can be: an operation without inputs has nothing to get wrong.
                if mode is GenerationMode.POSITIVE or operation.definition.raw.get("parameters") \
                        or "requestBody" in operation.definition.raw:
                    failures[f"{operation.label} ({mode})"] = "no request could be generated"
            except (Exception, BaseExceptionGroup) as exc:  # every operation runs; failures are reported together
                failures[f"{operation.label} ({mode})"] = f"{type(exc).__name__}: {exc}"[:3000]
    assert {"sessions.create_session", "hooks.create_hook", "config.patch_config", "logs.stream_logs"} <= set(
        exercised)
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield path, method, operation, item.get("parameters", []) + operation.get("parameters", [])


@pytest.fixture
def document(client):
    return client.get("/api/v1/openapi.json").json


def test_every_operation_has_a_stable_unique_operation_id(document):
    ids = [operation.get("operationId") for _, _, operation, _ in operations(document)]

    assert None not in ids
    assert len(ids) == len(set(ids))
    assert {"sessions.create_session", "config.patch_config", "status.health"} <= set(ids)


def test_every_operation_lists_the_errors_the_pipeline_can_give(document):
    error = {"$ref": "#/components/schemas/Error"}
    for path, method, operation, parameters in operations(document):
        responses = operation["responses"]
        expected = {"400", "429", "503"}
        if operation.get("security", document["security"]):
            expected |= {"401", "403"}
        if any(parameter["in"] == "path" for parameter in parameters):
            expected.add("404")
        if "requestBody" in operation:
            expected.add("413")
        assert expected <= set(responses), (method, path, sorted(responses))
        for status in expected:
            schema = responses[status]["content"]["application/json"]["schema"]
            # The health probe answers its own body when unhealthy; every other error is the envelope.
            own = path == "/api/v1/status/health" and status == "503"
            assert schema == ({"$ref": "#/components/schemas/Health"} if own else error), (method, path, status)
    assert "WWW-Authenticate" in document["paths"]["/api/v1/status"]["get"]["responses"]["401"]["headers"]
    assert "Retry-After" in document["paths"]["/api/v1/status"]["get"]["responses"]["429"]["headers"]


def test_routes_document_the_conflicts_they_can_give(document):
    assert "409" in document["paths"]["/api/v1/sessions/{session_id}/messages"]["post"]["responses"]
    assert "409" in document["paths"]["/api/v1/sessions/{session_id}"]["delete"]["responses"]
    assert "409" in document["paths"]["/api/v1/hooks/{hook_id}/test"]["post"]["responses"]
    assert "409" not in document["paths"]["/api/v1/sessions"]["get"]["responses"]


def test_event_streams_describe_their_events(document):
    logs = document["paths"]["/api/v1/logs"]["get"]["responses"]["200"]["content"]
    stream = document["paths"]["/api/v1/logs/stream"]["get"]["responses"]["200"]["content"]
    reply = document["paths"]["/api/v1/sessions/{session_id}/messages"]["post"]["responses"]["200"]["content"]

    assert logs["application/json"]["schema"] == {"$ref": "#/components/schemas/Logs"}
    for content, events in ((logs, ["log"]), (stream, ["log"]), (reply, ["received", "delta", "tool_call",
                                                                          "tool_result", "done", "error"])):
        event = content["text/event-stream"]["schema"]
        assert event["type"] == "object" and event["description"]
        assert event["properties"]["event"]["enum"] == events
        assert event["required"] == ["event", "data"]
    assert reply["application/json"]["schema"] == {"$ref": "#/components/schemas/Message"}


def test_configuration_shapes_are_documented(document):
    schemas = document["components"]["schemas"]
    get = document["paths"]["/api/v1/config"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    patch = schemas["ConfigPatch"]

    assert get == {"$ref": "#/components/schemas/Config"}
    assert schemas["Config"]["properties"]["agent"]["properties"]["max_turns"]["maximum"] == 100000
    assert patch["minProperties"] == 1 and patch["type"] == "object"
    assert patch["properties"]["agent.max_turns"] == {
        "type": "integer", "minimum": 1, "maximum": 100000, "description": patch["properties"]["agent.max_turns"][
            "description"]}
    assert patch["properties"]["logs.level"]["enum"] == ["trace", "debug", "info", "warn", "error"]


def test_enforced_constraints_are_in_the_schema(document):
    schemas = document["components"]["schemas"]
    since = next(parameter for parameter in document["paths"]["/api/v1/logs"]["get"]["parameters"]
                 if parameter["name"] == "since")

    assert schemas["SessionCreate"]["properties"]["channel"]["enum"] == ["api"]
    assert schemas["HookCreate"]["properties"]["secret"]["pattern"].startswith("^whsec_")
    assert schemas["HookPatch"]["minProperties"] == 1
    assert re.match(since["schema"]["pattern"], "2h") and not re.match(since["schema"]["pattern"], "999999999d")
    assert document["paths"]["/api/v1/sessions"]["post"]["requestBody"]["required"] is False


@pytest.mark.parametrize("value", [0, 1, "yes", "true", None, []])
def test_booleans_in_bodies_are_true_or_false_only(client, auth, value):
    session = client.post("/api/v1/sessions", json={}, headers=auth()).json["id"]

    reply = client.post(f"/api/v1/sessions/{session}/messages", json={"content": "hi", "stream": value},
                        headers=auth())

    assert reply.status_code == 400
    assert reply.json["error"]["details"] == {
        "stream": ["Field may not be null." if value is None else "Not a valid boolean."]}


@pytest.mark.parametrize("value", ["1", "yes", "True", "on"])
def test_booleans_in_query_strings_are_the_words_true_or_false(client, auth, value):
    assert client.get(f"/api/v1/logs?stream={value}", headers=auth()).status_code == 400
    assert client.get("/api/v1/logs?stream=false", headers=auth()).status_code == 200


def test_a_session_needs_no_body(client, auth):
    reply = client.post("/api/v1/sessions", headers=auth())

    assert reply.status_code == 201
    assert reply.json["channel"] == "api"


def test_an_empty_patch_is_refused(client, auth):
    hook = client.post("/api/v1/hooks", json={"url": "https://example.com/hook", "events": ["*"]},
                       headers=auth())
    # Refused before any lookup of the host when the body is empty.
    reply = client.patch("/api/v1/hooks/hook_0000000000000000", json={}, headers=auth())

    assert hook.status_code in (201, 400)
    assert reply.status_code == 400
    assert client.patch("/api/v1/config", json={}, headers=auth()).status_code == 400


def test_unknown_and_repeated_query_parameters_are_refused(client, auth):
    unknown = client.get("/api/v1/sessions?colour=red", headers=auth())
    repeated = client.get("/api/v1/sessions?status=active&status=idle", headers=auth())

    assert unknown.status_code == 400 and "colour" in unknown.json["error"]["details"]
    assert repeated.status_code == 400 and repeated.json["error"]["details"] == {"status": ["give it once"]}
    assert client.get("/api/v1/sessions?status=idle", headers=auth()).status_code == 200


def test_metadata_numbers_are_bounded_as_documented(client, auth):
    too_big = client.post("/api/v1/sessions", json={"metadata": {"n": 1e300}}, headers=auth())
    fine = client.post("/api/v1/sessions", json={"metadata": {"n": 2.5, "none": None, "deep": [{"x": 1}]}},
                       headers=auth())

    assert too_big.status_code == 400
    assert fine.status_code == 201 and fine.json["metadata"]["deep"] == [{"x": 1}]


def test_swagger_ui_assets_come_from_the_installed_package(client):
    page = client.get("/api/v1/docs")
    script = client.get("/api/v1/docs/assets/swagger-ui-bundle.js")

    assert "/api/v1/docs/assets/swagger-ui-bundle.js" in page.get_data(as_text=True)
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.get_data()
    assert client.get("/api/v1/docs/assets/../../openapi.json").status_code == 404
