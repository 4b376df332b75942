"""The JSON parser's bounds, the strict writer, and the configuration's ranges, in process."""

import json
import math
import time

import pytest

from app.core import jsonbody
from app.core.fields import OPEN
from app.core.jsonbody import MAX_DEPTH, MAX_INT, InvalidJson
from app.core.settings import SCHEMA, ConfigError, check_patch, load_settings, parse_limit
from tests.support.config import write_config


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


ACCEPTED = {
    "object": ('{"a": [1, 2.5, "x", true, null]}', {"a": [1, 2.5, "x", True, None]}),
    "surrogate pair": ('"\\ud83d\\ude00"', "\U0001f600"),
    "escaped backslash before u": ('"\\\\ud800"', "\\ud800"),
    "largest integers": (f"[{MAX_INT}, -{MAX_INT}]", [MAX_INT, -MAX_INT]),
    "large and tiny doubles": ("[1.7976931348623157e308, 5e-324, -0.0]", [1.7976931348623157e308, 5e-324, -0.0]),
    "deepest nesting": (nested(MAX_DEPTH), json.loads(nested(MAX_DEPTH))),
    "brackets inside strings": (json.dumps(["[" * 5000, "{" * 5000, '"]\\'], ), ["[" * 5000, "{" * 5000, '"]\\']),
    "control escapes": ('"tab\\t nl\\n \\u001f \\u007f"', "tab\t nl\n \x1f \x7f"),
}


@pytest.mark.parametrize("name", ACCEPTED)
def test_documents_within_the_bounds_parse_as_json_does(name):
    text, expected = ACCEPTED[name]
    assert jsonbody.loads(text) == expected
    assert jsonbody.loads(text.encode()) == expected


REFUSED = {
    "lone high surrogate": ('{"a": "x\\ud800"}', "lone surrogate in a"),
    "lone low surrogate": ('["\\udc00"]', "lone surrogate in [0]"),
    "reversed pair": ('"\\ude00\\ud83d"', "lone surrogate in the body"),
    "surrogate in a key": ('{"m": {"\\ud800": 1}}', "lone surrogate in a key of m"),
    "surrogate in a nested key's value": ('{"m": {"\\ud800": ["\\ud800"]}}', "lone surrogate in "),
    "surrogate deep down": (nested(60, '{"k": "\\udbff"}'), "lone surrogate in [0]"),
    "raw surrogate in text": ('["\ud800"]', "lone surrogate in [0]"),
    "NUL": ('{"a": "\\u0000"}', "U+0000 (in a)"),
    "NUL in a key": ('{"\\u0000": 1}', "U+0000 (in a key of the body)"),
    "NaN": ('{"a": NaN}', "finite, not NaN"),
    "Infinity": ("[Infinity]", "finite, not Infinity"),
    "-Infinity": ("[-Infinity]", "finite, not -Infinity"),
    "1e400": ("[1e400]", "finite, not 1e400"),
    "-1e400": ("[-1e400]", "finite, not -1e400"),
    "just past the integers": (f"[{MAX_INT + 1}]", "integers must be between"),
    "just below the integers": (f"[-{MAX_INT + 1}]", "integers must be between"),
    "5,000 digits": ("[" + "9" * 5000 + "]", "integers must be between"),
    "one level too deep": (nested(MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH}"),
    "1,000 levels": (nested(1000), f"nested deeper than {MAX_DEPTH}"),
    "objects 1,000 levels": ('{"a":' * 1000 + "1" + "}" * 1000, f"nested deeper than {MAX_DEPTH}"),
    "unclosed": ("[" * 1000, "brackets do not balance"),
    "mismatched": ("[1}", "brackets do not balance"),
    "syntax": ('{"a" 1}', "Expecting ':' delimiter"),
    "trailing text": ("[1] x", "Extra data"),
    "BOM": ("\ufeff[1]", "BOM"),
    "empty": ("", "Expecting value"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_documents_beyond_the_bounds_are_refused_with_a_reason(name):
    text, reason = REFUSED[name]
    with pytest.raises(InvalidJson) as caught:
        jsonbody.loads(text)
    assert reason in str(caught.value)
    # The reason goes back to the client: it must itself be servable JSON.
    json.loads(jsonbody.dumps(str(caught.value)))
    str(caught.value).encode("utf-8")


@pytest.mark.parametrize("raw, reason", [
    (b'["\xed\xa0\x80"]', "not valid UTF-8 (byte 2)"),
    (b'["\xff"]', "not valid UTF-8"),
    (b'["\xc3"]', "not valid UTF-8"),
    ('["é"]'.encode("utf-16"), "not valid UTF-8"),
])
def test_bodies_must_be_utf8(raw, reason):
    with pytest.raises(InvalidJson, match=reason.replace("(", r"\(").replace(")", r"\)")):
        jsonbody.loads(raw)


def test_depth_is_checked_without_recursion_and_quickly():
    started = time.monotonic()
    for text in (nested(200_000), "[" * 200_000, "[{" * 100_000, json.dumps([[0] * 10] * 10_000)):
        with pytest.raises(InvalidJson):
            jsonbody.loads(text[:-1] + "x")
    assert time.monotonic() - started < 2.0


def test_huge_integers_never_reach_int():
    started = time.monotonic()
    with pytest.raises(InvalidJson):
        jsonbody.loads("[" + "1" * 1_000_000 + "]")
    assert time.monotonic() - started < 0.5


def test_dumps_refuses_non_finite_numbers():
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError):
            jsonbody.dumps({"a": [value]})
    assert jsonbody.dumps({"a": 1.5}, separators=(",", ":")) == '{"a":1.5}'


def test_the_flask_provider_reads_and_writes_through_the_same_rules(app):
    with app.test_request_context("/", data=b'{"a": NaN}', content_type="application/json"):
        with pytest.raises(ValueError):
            app.json.dumps({"a": math.nan})
        with pytest.raises(InvalidJson):
            app.json.loads('{"a": "\\ud800"}')
        from flask import request
        from werkzeug.exceptions import BadRequest

        with pytest.raises(BadRequest):
            request.get_json()
    assert app.json.loads(b'{"a": 1}') == {"a": 1}


# ---- over the API, in process --------------------------------------------------


@pytest.fixture
def app(app_factory):
    return app_factory({"rate_limits": {"sessions_write": "10000/s", "config_write": "10000/s"}})


def body(client, auth, method, path, data, **kwargs):
    return client.open(path, method=method, data=data, headers={**auth(), "Content-Type": "application/json"},
                       **kwargs)


@pytest.mark.parametrize("path, data, reason", [
    ("/api/v1/sessions", b'{"user_id": "\\ud800"}', "lone surrogate in user_id"),
    ("/api/v1/sessions", b'{"metadata": {"\\udfff": "x"}}', "lone surrogate in a key of metadata"),
    ("/api/v1/sessions", b'{"metadata": {"v": Infinity}}', "finite"),
    ("/api/v1/hooks", b'{"url": "https://example.com/\\ud800", "events": ["*"]}', "lone surrogate in url"),
    ("/api/v1/hooks", b'{"url": "https://example.com/", "events": ["*"], "secret": "\\u0000"}', "U+0000"),
])
def test_api_bodies_are_refused_before_any_service(client, auth, path, data, reason):
    response = body(client, auth, "POST", path, data)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "bad_request"
    assert reason in response.json["error"]["details"]["body"][0]


def test_a_message_with_a_lone_surrogate_is_refused(client, auth):
    created = body(client, auth, "POST", "/api/v1/sessions", b"{}")
    assert created.status_code == 201
    response = body(client, auth, "POST", f"/api/v1/sessions/{created.json['id']}/messages", b'{"content": "\\ud800"}')
    assert response.status_code == 400
    assert "lone surrogate in content" in response.json["error"]["details"]["body"][0]
    listed = client.get(f"/api/v1/sessions/{created.json['id']}/messages", headers=auth())
    assert listed.json["total"] == 0


def test_an_empty_body_is_still_no_body(client, auth):
    assert body(client, auth, "POST", "/api/v1/sessions", b"").status_code == 201


@pytest.mark.parametrize("url, where", [
    ("/api/v1/sessions?channel=%ED%A0%80", "channel"),
    ("/api/v1/sessions?channel=%00", "channel"),
    ("/api/v1/sessions?status=%C3", "status"),
    ("/api/v1/logs?module=%ff&level=info", "module"),
    ("/api/v1/sessions/a%00", "path"),
])
def test_urls_that_are_not_text_are_400(client, auth, url, where):
    response = client.get(url, headers=auth())
    assert response.status_code == 400
    assert where in response.json["error"]["details"]


def test_a_path_of_bytes_that_are_not_utf8_is_400(client, auth):
    # What a server puts in PATH_INFO for /api/v1/sessions/%ED%A0%80 (the test client would re-encode it).
    response = client.get("/", headers=auth(), environ_overrides={"PATH_INFO": "/api/v1/sessions/\xed\xa0\x80"})
    assert response.status_code == 400
    assert response.json["error"]["details"] == {"path": ["not valid UTF-8"]}


def test_an_unencoded_query_is_fine(client, auth):
    assert client.get("/api/v1/sessions?channel=caf%C3%A9+x", headers=auth()).status_code == 200


# ---- configuration ranges ------------------------------------------------------


NO_LIMITS = ["10/0s", "0/s", "0/10m", "1/90000s", "1/25h", "9" * 5000 + "/s", "5/" + "9" * 50 + "s"]


@pytest.mark.parametrize("text", NO_LIMITS, ids=lambda text: text[:12])
def test_parse_limit_refuses_empty_and_endless_windows(text):
    with pytest.raises(ValueError):
        parse_limit(text)


def test_parse_limit_takes_a_day_at_most():
    assert parse_limit("1/24h") == (1, 86_400)
    assert parse_limit("1/86400s") == (1, 86_400)


def test_every_numeric_key_declares_its_range():
    for section, fields in SCHEMA.items():
        for key, field in ({} if fields is OPEN else fields).items():
            if field.kind in ("int", "float"):
                assert field.minimum is not None and field.maximum is not None, f"{section}.{key}"
                assert field.minimum <= field.default <= field.maximum, f"{section}.{key}"


@pytest.mark.parametrize("toml, message", [
    ('[rate_limits]\ndefault = "10/0s"\n', "rate_limits.default"),
    ("[agent]\nmax_turns = 100000000000000000000000\n", "agent.max_turns: must be at most 100000"),
    ("[agent]\nmax_turns = 100001\n", "agent.max_turns: must be at most 100000 (line 2)"),
    ("[provider]\ntimeout = inf\n", "provider.timeout: expected a finite number"),
    ("[provider]\ntimeout = nan\n", "provider.timeout: expected a finite number"),
    ("[memory]\ntop_k = 1001\n", "memory.top_k: must be at most 1000"),
    ("[channels_config.telegram]\nrate = [1.0, nan]\n", "channels_config.telegram.rate: expected a finite number"),
])
def test_the_file_loader_refuses_values_out_of_range(tmp_path, toml, message):
    path = tmp_path / "lockgate.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(path)


@pytest.fixture
def current(tmp_path):
    return load_settings(write_config(tmp_path / "lockgate.toml", {
        "channels_config": {"telegram": {"bot_token": "123:abc", "chats": {"main": 1}}},
    }))


@pytest.mark.parametrize("changes, key, reason", [
    ({"channels_config.telegram.bot_token.sub": "y"}, "channels_config.telegram.bot_token.sub",
     "channels_config.telegram.bot_token is a value, not a table"),
    ({"channels_config.telegram.chats": "x"}, "channels_config.telegram.chats", "is a table"),
    ({"channels_config.a.b": [1, {"x": 1}, None]}, "channels_config.a.b", "a list of those"),
    ({"channels_config.a.b": [[1]]}, "channels_config.a.b", "a list of those"),
    ({"channels_config.a.b": None}, "channels_config.a.b", "a list of those"),
    ({"channels_config.a.b": 1, "channels_config.a.b.c": 2}, "channels_config.a.b.c", "is a value"),
    ({"channels_config.a..b": 1}, "channels_config.a..b", "expected channels_config.<name>.<key>"),
    ({"rate_limits.default": "10/0s"}, "rate_limits.default", "at least one request"),
    ({"agent.max_turns": 10**23}, "agent.max_turns", "must be at most 100000"),
    ({"hooks.timeout_secs": 301.0}, "hooks.timeout_secs", "must be at most 300"),
    ({"gateway.port": 65_536}, "gateway.port", "must be at most 65535"),
])
def test_check_patch_names_the_key_it_refuses(current, changes, key, reason):
    to_write, errors = check_patch(changes, current)
    assert list(errors) == [key]
    assert reason in errors[key][0]


def test_check_patch_accepts_new_tables_and_scalar_lists(current):
    changes = {"channels_config.telegram.chats.side": 2, "channels_config.slack.tags": ["a", 1, 2.5, True],
               "channels_config.slack.nested.deep.key": "v"}
    to_write, errors = check_patch(changes, current)
    assert errors == {} and to_write == changes


def test_since_durations_are_bounded_with_their_own_reason():
    from datetime import datetime

    from app.core.timeparse import parse_since

    with pytest.raises(ValueError, match="at most 36500 days"):
        parse_since("999999999d", datetime(2026, 1, 1))
    assert parse_since("1d", datetime(2026, 1, 2)) == datetime(2026, 1, 1)
