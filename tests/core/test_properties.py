"""Arbitrary JSON and text against every write route: never a 5xx, and everything stored reads back as JSON.

The routes come from the application's URL map, so a new write route is covered
the day it is added. Bodies are arbitrary JSON (NaN, huge integers and lone
surrogates included) and objects keyed by the route's own schema fields, so that
some of them pass validation and get stored. Webhook URLs are only ever loopback
literals, nothing delivers in process, and the provider stays the offline echo:
nothing leaves this machine.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.fields import OPEN
from app.core.settings import SCHEMA
from app.hooks import signing

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
EXAMPLES = 50
LOOPBACK = "http://127.0.0.1:9"  # the discard port: nothing listens, and nothing is sent in process anyway
CHANNEL, CHANNEL_SECRET = "inbox", "whsec_" + base64.b64encode(b"k" * 32).decode()
MCP_SERVER = "probe"  # listed by GET /api/v1/mcp; nothing connects in process (no background runs)
BASE_CONFIG = {
    "channels_config": {CHANNEL: {"type": "webhook", "secret": CHANNEL_SECRET}},
    "mcp": {"servers": {MCP_SERVER: {"transport": "http", "url": f"{LOOPBACK}/mcp"}}},
    "rate_limits": {"default": "1000000/s", "sessions_write": "1000000/s", "sessions_read": "1000000/s",
                    "config_write": "1000000/s"},
    "hooks": {"allow_private_targets": True},  # loopback targets, and no DNS lookups for them
    "provider": {"name": "echo", "base_url": LOOPBACK},
}

# Text with everything JSON can carry: lone surrogates, NUL, controls, astral characters.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
numbers = st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**60), 2**60)
scalars = st.none() | st.booleans() | numbers | any_text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(any_text, inner, max_size=4), max_leaves=12)
url_text = st.text(st.characters(exclude_categories=("Cs", "Cc", "Z")), max_size=30) | any_text
loopback_urls = st.builds(lambda host, path: f"http://{host}:9/{path}", st.sampled_from(["127.0.0.1", "[::1]"]),
                          url_text)
config_keys = st.sampled_from(sorted(f"{section}.{key}" for section, fields in SCHEMA.items() if fields is not OPEN
                                     for key in fields))
open_keys = st.builds(lambda section, name, key: f"{section}.{name}.{key}",
                      st.sampled_from(sorted(s for s, f in SCHEMA.items() if f is OPEN)), any_text, any_text)


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def body_fields(view) -> dict[str, bool] | None:
    """The JSON body fields a route's schema declares, each with whether it is required; None without a schema."""
    doc = getattr(view, "_apidoc", {})
    schemas = [p["schema"] for p in doc.get("arguments", {}).get("parameters", []) if p.get("in") == "json"]
    manual = doc.get("manual_doc", {}).get("requestBody", {}).get("content", {}).get("application/json", {})
    schemas += [manual["schema"]] if "schema" in manual else []
    if not schemas:
        return None
    return {name: field.required for schema in schemas for name, field in schema._declared_fields.items()}


not_text = st.none() | st.booleans() | numbers | st.lists(scalars, max_size=3)


def likely(valid, junk=json_values):
    """Mostly values a validator takes (so that they get stored), sometimes anything at all."""
    return st.sampled_from([True, True, False]).flatmap(lambda good: valid if good else junk)


FIELD_VALUES = {
    "events": likely(st.lists(st.sampled_from(["*", "session.created", "message.received"]), min_size=1, max_size=3)),
    "channel": likely(st.just("api")),
    "metadata": likely(st.dictionaries(any_text, json_values, max_size=5)),
    "content": likely(any_text.filter(bool)),
    "user_id": likely(any_text.filter(bool)),
}


def value_for(name: str):
    # Anything that could name a host is a loopback literal: nothing resolves or connects elsewhere.
    if "url" in name:
        return likely(loopback_urls, not_text)
    return FIELD_VALUES.get(name, json_values)


def config_value(dotted: str):
    field = SCHEMA.get(dotted.partition(".")[0], {})
    field = None if field is OPEN else field.get(dotted.partition(".")[2])
    return likely(st.just(field.default) if field else scalars | st.lists(scalars, max_size=3))


# JSON texts that Python's json reads but nothing downstream can keep or serve back, and one pair that is fine.
HOSTILE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 5000, str(2**53), str(10**23), '"\\ud800"',
           '"x\\udfff"', '"a\\u0000b"', "[" * 1000 + "]" * 1000, '{"\\ud800": 1}', '{"a\\u0000": 1}',
           '"\\ud83d\\ude00"']
WRAPPINGS = ["{}", "[{}]", '{{"k": {}}}']
MARK = "\x01hostile\x01"


def with_hostile(objects, names):
    """An otherwise plausible object with one field's value replaced by a hostile JSON text, at some depth."""
    def inject(drawn):
        value, name, literal, wrapping = drawn
        return json.dumps({**value, name: MARK}).replace(json.dumps(MARK), wrapping.format(literal)).encode()

    return st.tuples(objects, names, st.sampled_from(HOSTILE), st.sampled_from(WRAPPINGS)).map(inject)


def bodies(fields: dict[str, bool] | None):
    """Raw bodies: objects of the route's own fields (config keys for a free-form one), some with a hostile
    value where a validator would otherwise take them; arbitrary JSON; arbitrary bytes."""
    if fields is None:
        return likely(json_values.map(lambda value: json.dumps(value).encode()), st.binary(max_size=60))
    if fields:
        values = {name: value_for(name) for name in fields}
        required = {name: values[name] for name, needed in fields.items() if needed}
        objects = st.fixed_dictionaries(required, optional={k: v for k, v in values.items() if k not in required})
        names = st.sampled_from(sorted(fields))
    else:
        names = config_keys | open_keys | st.builds("channels_config.{}.{}".format, st.sampled_from(["tg", "sl"]),
                                                    st.sampled_from(["token", "chats", "x"]))
        objects = st.lists(names.flatmap(lambda key: st.tuples(st.just(key), config_value(key))), min_size=1,
                           max_size=3).map(dict)
    junk = st.dictionaries(any_text, json_values, min_size=1, max_size=2)
    encoded = (objects | st.tuples(objects, junk).map(lambda pair: {**pair[0], **pair[1]}) | json_values).map(
        lambda value: json.dumps(value).encode())
    return st.one_of(encoded, with_hostile(objects, names), st.binary(max_size=60))


def write_routes(app) -> list[tuple[str, str]]:
    found = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/"):
            found += [(rule.rule, method) for method in sorted(rule.methods & set(WRITE_METHODS))]
    return sorted(found)


PARAMETER = re.compile(r"<(?:[^:>]+:)?([^>]+)>")


class World:
    """Real objects for the path parameters of a route: made fresh for every example where a route
    may consume them (sessions, hooks, deliveries), the configured ones for channels, and for any
    other parameter the first object its collection lists (an id that names nothing when it lists none)."""

    def __init__(self, client, headers):
        self.client, self.headers = client, headers

    def post(self, path, body):
        response = self.client.post(path, json=body, headers=self.headers)
        assert response.status_code in (201, 202), (path, response.get_data(as_text=True))
        return response.json["id"]

    def listed(self, collection: str) -> str:
        response = self.client.get(collection, headers=self.headers)
        body = response.json if response.status_code == 200 and response.is_json else {}
        for items in (body.values() if isinstance(body, dict) else []):
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and isinstance(item.get("id", item.get("name")), str):
                    return item.get("id", item.get("name"))
        return "nothing-by-this-id"

    def fill(self, rule: str, replace: str | None) -> str:
        made = {}
        if "<session_id>" in rule:
            made["session_id"] = self.post("/api/v1/sessions", {"user_id": "property"})
        if "<hook_id>" in rule:
            made["hook_id"] = self.post("/api/v1/hooks", {"url": f"{LOOPBACK}/hook", "events": ["*"]})
        if "<delivery_id>" in rule:
            made["delivery_id"] = self.post(f"/api/v1/hooks/{made['hook_id']}/test", None)
        if rule.startswith("/api/v1/channels/<name>"):
            made["name"] = CHANNEL  # the webhook channel: its messages route is signed below
        for match in PARAMETER.finditer(rule):
            if match[1] not in made:
                made[match[1]] = self.listed(rule[:match.start()].rstrip("/"))
        if replace is not None and made:  # sometimes an id that names nothing
            made[sorted(made)[0]] = replace
        return PARAMETER.sub(lambda match: made[match[1]], rule)


def signed(path: str, body: bytes) -> dict:
    """Standard Webhooks headers for a body posted to the webhook channel, so that it gets past the signature."""
    if path != f"/api/v1/channels/{CHANNEL}/messages":
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return signing.headers(CHANNEL_SECRET, f"msg_{uuid.uuid4().hex}", int(time.time()), text)


def check_served(response, where: str) -> None:
    text = response.get_data(as_text=True)
    assert response.status_code < 500, f"{where}: {response.status_code} {text[:300]}"
    content_type = response.headers.get("Content-Type", "")
    if response.status_code == 204:
        assert not text, f"{where}: a 204 with a body"
    elif content_type.startswith("application/json"):
        strict_json(text)
    elif content_type.startswith("text/event-stream"):
        for line in text.splitlines():
            if line.startswith("data:"):
                strict_json(line[5:])
    else:
        assert not text, f"{where}: {content_type} {text[:200]}"


def read_everything(app, client, headers) -> int:
    """GET every readable resource (collections, then each object they list); all of it must be strict JSON."""
    urls = ["/api/v1/config", "/api/v1/status", "/api/v1/logs?limit=500", "/api/v1/hooks", "/api/v1/channels",
            "/api/v1/mcp"]
    urls += [f"/api/v1/sessions?status={status}&limit=200" for status in ("active", "idle", "terminated")]
    read = 0
    while urls:
        url = urls.pop()
        response = client.get(url, headers={**headers, "Accept": "application/json"})
        check_served(response, f"GET {url}")
        assert response.status_code == 200, (url, response.get_data(as_text=True)[:200])
        body = strict_json(response.get_data(as_text=True))
        read += 1
        for session in body.get("sessions", []) if url.startswith("/api/v1/sessions?") else []:
            urls += [f"/api/v1/sessions/{session['id']}", f"/api/v1/sessions/{session['id']}/messages?limit=200"]
        for hook in body.get("hooks", []) if url == "/api/v1/hooks" else []:
            urls += [f"/api/v1/hooks/{hook['id']}", f"/api/v1/hooks/{hook['id']}/deliveries?limit=500"]
    return read


@pytest.fixture
def app(app_factory):
    return app_factory(BASE_CONFIG)


def test_every_write_route_is_found(app):
    routes = write_routes(app)
    for expected in [("/api/v1/sessions", "POST"), ("/api/v1/config", "PATCH"), ("/api/v1/hooks/<hook_id>", "PATCH"),
                     ("/api/v1/sessions/<session_id>", "DELETE"),
                     ("/api/v1/hooks/<hook_id>/deliveries/<delivery_id>/retry", "POST")]:
        assert expected in routes


def fuzz_route(client, world, headers, rule: str, method: str, fields: list[str], accepted: dict) -> None:
    """One route, ``EXAMPLES`` examples; a config change is undone after each one."""
    settings_ = client.application.extensions["lockgate"].settings
    original_config = settings_.path.read_text(encoding="utf-8")
    ids = st.none() | st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(body=bodies(fields), replace=ids)
    def example(body, replace):
        path = world.fill(rule, replace)
        try:
            response = client.open(path, method=method, data=body, headers={**headers, **signed(path, body)})
            check_served(response, f"{method} {rule} with {body[:200]!r}")
            if response.status_code < 300:
                accepted[(rule, method)] = accepted.get((rule, method), 0) + 1
        finally:
            if settings_.path.read_text(encoding="utf-8") != original_config:
                check_served(client.get("/api/v1/config", headers=headers), "GET /api/v1/config after a PATCH")
                settings_.path.write_text(original_config, encoding="utf-8")
                settings_.refresh()

    example()


def test_no_write_route_fails_on_any_input_and_all_it_stores_reads_back(app, auth):
    client = app.test_client()
    headers = {**auth("admin"), "Content-Type": "application/json"}
    world = World(client, auth("admin"))
    accepted = {}
    endpoints = {(rule.rule, method): rule.endpoint for rule in app.url_map.iter_rules() for method in rule.methods}
    for rule, method in write_routes(app):
        fuzz_route(client, world, headers, rule, method, body_fields(app.view_functions[endpoints[rule, method]]),
                   accepted)

    assert read_everything(app, client, auth("admin")) > 7
    # The bodies must reach storage, not only the validators.
    for route in [("/api/v1/sessions", "POST"), ("/api/v1/config", "PATCH"), ("/api/v1/hooks", "POST")]:
        assert accepted.get(route), f"no generated body was accepted by {route}: {accepted}"
