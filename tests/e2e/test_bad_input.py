"""Bad input over HTTP against real gunicorn: always a 4xx envelope, never a 500, nothing unservable stored."""

import json
import socket

import pytest
import requests

from tests.support.databases import database_url
from tests.support.server import RELAXED_LIMITS, GunicornServer

MAX_BODY = 16_384
CONFIG = {
    "rate_limits": {**RELAXED_LIMITS["rate_limits"], "config_write": "10000/s"},
    "gateway": {"max_body_bytes": MAX_BODY},
}


@pytest.fixture(scope="module")
def lenient(tmp_path_factory, backend):
    """A server whose limits let one test send many writes, with a small body limit."""
    tmp = tmp_path_factory.mktemp("bad-input")
    with database_url(backend, tmp) as url:
        instance = GunicornServer(tmp, url, CONFIG).start()
        yield instance
        instance.stop()


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def refused(response, status=400, code="bad_request") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = strict_json(response.text)["error"]
    assert error["code"] == code
    return error


def send(server, method, path, body: bytes, **headers):
    return requests.request(method, f"{server.url}{path}", data=body, timeout=10,
                            headers={**server.headers("admin"), "Content-Type": "application/json", **headers})


def session(server) -> str:
    response = send(server, "POST", "/api/v1/sessions", b'{"user_id": "bad-input"}')
    assert response.status_code == 201, response.text
    return response.json()["id"]


BAD_BODIES = {
    "lone surrogate in a value": (b'{"user_id": "\\ud800"}', "lone surrogate in user_id"),
    "lone low surrogate in metadata": (b'{"metadata": {"a": ["x", "\\udc00"]}}', "lone surrogate in metadata.a[1]"),
    "lone surrogate in a key": (b'{"metadata": {"\\ud800": 1}}', "lone surrogate in a key of metadata"),
    "encoded surrogate bytes": (b'{"user_id": "\xed\xa0\x80"}', "not valid UTF-8"),
    "invalid UTF-8": (b'{"user_id": "\xff"}', "not valid UTF-8"),
    "NUL": (b'{"user_id": "a\\u0000b"}', "U+0000"),
    "NaN": (b'{"metadata": {"a": NaN}}', "finite, not NaN"),
    "Infinity": (b'{"metadata": {"a": Infinity}}', "finite, not Infinity"),
    "-Infinity": (b'{"metadata": {"a": -Infinity}}', "finite, not -Infinity"),
    "1e400": (b'{"metadata": {"a": 1e400}}', "finite, not 1e400"),
    "5,000 digits": (b'{"metadata": {"a": ' + b"7" * 5000 + b"}}", "integers must be between"),
    "2**53": (b'{"metadata": {"a": 9007199254740992}}', "integers must be between"),
    "1,000 levels": (b'{"metadata": {"a": ' + b"[" * 1000 + b"]" * 1000 + b"}}", "nested deeper than 64"),
    "10,000 unclosed levels": (b"[" * 10_000, "brackets do not balance"),
}


@pytest.mark.parametrize("name", BAD_BODIES)
def test_json_beyond_the_bounds_is_400_with_the_reason(lenient, name):
    body, reason = BAD_BODIES[name]
    response = send(lenient, "POST", "/api/v1/sessions", body)
    assert reason in refused(response)["details"]["body"][0]


def test_every_body_reading_route_uses_the_same_parser(lenient):
    sid = session(lenient)
    hook = send(lenient, "POST", "/api/v1/hooks", b'{"url": "https://example.com/\\ud800", "events": ["*"]}')
    assert "lone surrogate in url" in refused(hook)["details"]["body"][0]
    message = send(lenient, "POST", f"/api/v1/sessions/{sid}/messages", b'{"content": "hi \\udfff"}')
    assert "lone surrogate in content" in refused(message)["details"]["body"][0]
    config = send(lenient, "PATCH", "/api/v1/config", b'{"agent.max_turns": 100000000000000000000000}')
    assert "integers must be between" in refused(config)["details"]["body"][0]


def test_values_at_the_bounds_are_stored_and_read_back(lenient):
    deep = {"a": 1}
    for _ in range(61):  # 62 levels, in "metadata", in the body: 64
        deep = {"d": deep}
    metadata = {"emoji \U0001f600": "\U0001f600", "big": 2**53 - 1, "small": -(2**53 - 1), "tiny": 5e-324, "deep": deep}
    created = send(lenient, "POST", "/api/v1/sessions", json.dumps({"metadata": metadata}).encode())
    assert created.status_code == 201, created.text
    read = requests.get(f"{lenient.url}/api/v1/sessions/{created.json()['id']}", headers=lenient.headers(), timeout=10)
    assert strict_json(read.text)["metadata"] == metadata
    deeper = send(lenient, "POST", "/api/v1/sessions", json.dumps({"metadata": {"deep": {"d": deep}}}).encode())
    assert "nested deeper than 64" in refused(deeper)["details"]["body"][0]


@pytest.mark.parametrize("query, parameter", [
    ("channel=%ED%A0%80", "channel"), ("channel=%ff", "channel"), ("channel=a%00b", "channel"),
    ("%ED%A0%80=1", "\\xed\\xa0\\x80"),
])
def test_query_strings_that_are_not_text_are_400(lenient, query, parameter):
    response = requests.get(f"{lenient.url}/api/v1/sessions?{query}", headers=lenient.headers("read"), timeout=10)
    assert parameter in refused(response)["details"]


@pytest.mark.parametrize("path", ["/api/v1/sessions/%ED%A0%80", "/api/v1/sessions/%00", "/api/v1/hooks/%ff"])
def test_paths_that_are_not_text_are_400(lenient, path):
    response = requests.delete(f"{lenient.url}{path}", headers=lenient.headers("admin"), timeout=10)
    assert "path" in refused(response)["details"]


@pytest.mark.parametrize("header, query", [("9" * 5000, None), ("-1", None), (None, "%C2%B2")])
def test_a_last_event_id_that_is_no_id_is_400(lenient, header, query):
    headers = {"Last-Event-ID": header} if header else {}
    response = requests.get(f"{lenient.url}/api/v1/logs/stream" + (f"?last_event_id={query}" if query else ""),
                            headers={**lenient.headers("read"), **headers}, timeout=10)
    assert any(key.lower().replace("-", "_") == "last_event_id" for key in refused(response)["details"])


@pytest.mark.parametrize("since", ["999999999d", "36501d", "9" * 400 + "w", "1e308s"])
def test_since_beyond_the_longest_duration_is_400(lenient, since):
    response = requests.get(f"{lenient.url}/api/v1/logs", params={"since": since},
                            headers=lenient.headers("read"), timeout=10)
    assert "duration" in refused(response)["details"]["since"][0]


def test_config_patches_that_cannot_be_stored_are_400_by_key(lenient):
    def patch(changes):
        return send(lenient, "PATCH", "/api/v1/config", json.dumps(changes).encode())

    assert patch({"channels_config.telegram.bot_token": "123:abc",
                  "channels_config.telegram.api_url": "http://127.0.0.1:9"}).status_code == 200
    cases = {
        "channels_config.telegram.bot_token.sub": ("y", "is a value, not a table"),
        "channels_config.a.b": ([1, {"x": 1}, None], "a list of those"),
        "channels_config.telegram": ("x", "expected channels_config.<name>.<key>"),
        "rate_limits.default": ("10/0s", "at least one request per period of at least one second"),
        "rate_limits.sessions_read": ("0/s", "at least one request"),
        "rate_limits.sessions_write": ("10/2d", "not a rate limit"),
        "rate_limits.config_write": ("1/90000s", "period is at most 24h"),
        "agent.max_turns": (100_001, "must be at most 100000"),
        "memory.top_k": (10**6, "must be at most 1000"),
        "provider.timeout": (1e9, "must be at most 3600"),
    }
    for key, (value, reason) in cases.items():
        error = refused(patch({key: value}))
        assert list(error["details"]) == [key]
        assert reason in error["details"][key][0], (key, error)
    # A value and a key under it in one patch: whichever comes second is refused.
    both = refused(patch({"channels_config.x.y": 1, "channels_config.x.y.z": 2}))["details"]
    assert len(both) == 1 and set(both) < {"channels_config.x.y", "channels_config.x.y.z"}
    assert "channels_config.x.y is a" in next(iter(both.values()))[0]

    config = strict_json(requests.get(f"{lenient.url}/api/v1/config", headers=lenient.headers(), timeout=10).text)
    assert config["agent"]["max_turns"] == 50
    assert config["rate_limits"]["default"] == CONFIG["rate_limits"]["default"]
    assert "a" not in config["channels_config"] and "x" not in config["channels_config"]
    assert requests.get(f"{lenient.url}/api/v1/status/health", timeout=10).status_code == 200
    assert requests.get(f"{lenient.url}/api/v1/status", headers=lenient.headers(), timeout=10).status_code == 200


# ---- bodies without a length, and what gunicorn itself refuses --------------------


def raw_request(server, head: bytes, body: bytes = b"") -> tuple[int, dict, bytes]:
    """One request over a plain socket (requests cannot send some of these); the status, headers and body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data and _complete(data):
                break
    head_text, _, rest = data.partition(b"\r\n\r\n")
    lines = head_text.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, rest


def _complete(data: bytes) -> bool:
    head, _, rest = data.partition(b"\r\n\r\n")
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return len(rest) >= int(value)
    return False


def chunked(body: bytes, size: int = 1000) -> bytes:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def chunked_head(server, method: str, path: str) -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.token('admin')}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()


def metadata_body(size: int) -> bytes:
    prefix, suffix = b'{"metadata": {"pad": "', b'"}}'
    return prefix + b"x" * (size - len(prefix) - len(suffix)) + suffix


@pytest.mark.parametrize("size", [MAX_BODY + 1, MAX_BODY * 4])
def test_a_chunked_body_over_the_limit_is_413(lenient, size):
    status, _headers, body = raw_request(lenient, chunked_head(lenient, "POST", "/api/v1/sessions"),
                                         chunked(metadata_body(size)))
    assert status == 413
    error = strict_json(body)["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"] == {"max_body_bytes": MAX_BODY}


def test_a_chunked_body_up_to_the_limit_is_read_whole(lenient):
    body = metadata_body(MAX_BODY)
    status, _headers, reply = raw_request(lenient, chunked_head(lenient, "POST", "/api/v1/sessions"), chunked(body))
    assert status == 201, reply
    assert strict_json(reply)["metadata"] == json.loads(body)["metadata"]


def request_head(target: str, *headers: str) -> bytes:
    return ("\r\n".join([f"GET {target} HTTP/1.1", "Host: 127.0.0.1", *headers, "Connection: close"])
            + "\r\n\r\n").encode()


def test_gunicorn_takes_request_lines_and_headers_up_to_its_limits(lenient):
    target = "/api/v1/status/health?pad="
    line = len("GET  HTTP/1.1") + len(target)
    assert raw_request(lenient, request_head(target + "a" * (8190 - line)))[0] == 200
    assert raw_request(lenient, request_head(target + "a" * (8191 - line)))[0] == 414
    assert raw_request(lenient, request_head(target, "X-Pad: " + "a" * 8000))[0] == 200
    assert raw_request(lenient, request_head(target, "X-Pad: " + "a" * 8200))[0] == 431
    assert raw_request(lenient, request_head(target, *(f"X-Pad-{n}: a" for n in range(95))))[0] == 200
    assert raw_request(lenient, request_head(target, *(f"X-Pad-{n}: a" for n in range(100))))[0] == 431
