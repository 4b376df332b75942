"""The OpenAPI document describes the API as it answers: schemathesis with every check over every operation.

Each operation runs on a fresh app (the PATCH /config examples must not
reconfigure the app the other operations run on) with an admin token. Nothing
leaves loopback: every URL in a generated body (webhook targets, a provider's
base URL) is pinned to a local receiver before the request is sent, and
private targets are allowed so that the receiver is a valid hook target.
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.hooks.receiver import Receiver

URL = re.compile(r"^[Hh][Tt][Tt][Pp][Ss]?://")
MAX_EXAMPLES = 15


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
    })
    with connection():
        token = create_token("openapi", ["admin"])[1]
    return app, token


def pin_urls(value, target: str):
    """The body with every URL-looking string replaced by one on the loopback receiver."""
    if isinstance(value, dict):
        return {key: pin_urls(item, target) for key, item in value.items()}
    if isinstance(value, list):
        return [pin_urls(item, target) for item in value]
    if isinstance(value, str) and URL.match(value):
        return target
    return value


def exercise(operation, mode, app, token, receiver) -> None:
    """Up to MAX_EXAMPLES generated requests of one mode to one operation, each response checked."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        if isinstance(case.body, (dict, list)):
            case.body = pin_urls(case.body, f"{receiver.url}/hook")
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, app=app)

    run()


def test_every_operation_answers_as_documented(app_factory, receiver):
    app, token = fresh_app(app_factory, receiver)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    # OpenAPI 3.0 cannot say "no U+0000 in object keys", which the JSON body parser refuses (app.core.jsonbody).
    schema.config.generation.update(allow_x00=False)
    failures, exercised = {}, []
    for result in schema.get_all_operations():
        operation = result.ok()
        exercised.append(operation.definition.raw["operationId"])
        # Its own app: PATCH /config examples must not reconfigure the app other operations run on.
        app, token = fresh_app(app_factory, receiver)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                exercise(operation, mode, app, token, receiver)
            except (Exception, BaseExceptionGroup) as exc:  # every operation runs; failures are reported together
                failures[f"{operation.label} ({mode})"] = f"{type(exc).__name__}: {exc}"[:3000]
    assert {"sessions.create_session", "hooks.create_hook", "config.patch_config", "logs.stream_logs"} <= set(
        exercised)
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
