"""Direct routes (app.core.direct): a plain GET of the status routes is answered without Flask's
request machinery, and answers exactly as Flask would; anything else, and every refusal or error,
goes through Flask with the admission already made, so nothing is counted twice."""

import logging
import time
from types import SimpleNamespace

import pytest
from flask import Flask

from app.core import direct, ratelimit
from app.core.db import DatabaseUnavailable, database
from app.status import service

VOLATILE = {"X-Request-ID", "X-RateLimit-Reset", "X-RateLimit-Remaining"}


@pytest.fixture(autouse=True)
def one_window(monkeypatch):
    """The rate-limit clock stands still: the requests a test compares fall in one window however long they
    take (a window of the 1000/s probes limit lasts one second), so their counts differ by their own hits."""
    pinned = time.time()
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: pinned, monotonic=time.monotonic))


@pytest.fixture
def served(monkeypatch):
    """GET through a test client, saying which path served it: 'flask' when Flask dispatched it, else 'direct'."""
    paths = []
    watched = set()

    def watch(app):
        dispatch = app.full_dispatch_request

        def counted():
            paths.append("flask")
            return dispatch()

        monkeypatch.setattr(app, "full_dispatch_request", counted)
        watched.add(app)

    def get(client, url, **kwargs):
        if client.application not in watched:
            watch(client.application)
        before = len(paths)
        response = client.get(url, **kwargs)
        return response, "flask" if len(paths) > before else "direct"

    return get


def _comparable(response):
    headers = sorted((name, value) for name, value in response.headers.items() if name not in VOLATILE)
    return response.status_code, headers


def test_a_plain_get_is_direct_and_answers_as_flask_does(client, auth, served):
    for url, headers in (("/api/v1/status/health", {}), ("/api/v1/status", auth("read"))):
        plain, plain_path = served(client, url, headers=headers)
        routed, routed_path = served(client, url + "?via=flask", headers=headers)
        assert (plain_path, routed_path) == ("direct", "flask")
        assert _comparable(plain) == _comparable(routed)
        if url.endswith("health"):
            assert plain.data == routed.data == b'{"healthy":true}\n'
        else:
            assert plain.json.keys() == routed.json.keys()
        assert int(plain.headers["X-RateLimit-Remaining"]) == int(routed.headers["X-RateLimit-Remaining"]) + 1


def test_head_a_body_or_another_path_goes_through_flask(client, auth, served):
    response = client.head("/api/v1/status/health")
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    _, path = served(client, "/api/v1/status/health", data=b"x")
    assert path == "flask"
    response, path = served(client, "/api/v1/status/", headers=auth("read"))
    assert path == "flask" and response.status_code == 404


def test_a_refusal_is_answered_by_flask_and_counted_once(app_factory, served):
    client = app_factory({"rate_limits": {"probes": "2/60s"}}).test_client()
    answers = [served(client, "/api/v1/status/health", headers={"X-Request-ID": f"probe-{n}"}) for n in range(3)]
    assert [(r.status_code, path) for r, path in answers] == [(200, "direct"), (200, "direct"), (429, "flask")]
    assert [r.headers["X-RateLimit-Remaining"] for r, _ in answers] == ["1", "0", "0"]
    refused = answers[2][0]
    assert refused.json["error"]["code"] == "rate_limited"
    assert refused.headers["X-Request-ID"] == "probe-2" and "Retry-After" in refused.headers

    unauthorised, path = served(client, "/api/v1/status", headers={"X-Request-ID": "no-token"})
    assert (unauthorised.status_code, path) == (401, "flask")
    assert unauthorised.headers["WWW-Authenticate"] == 'Bearer realm="lockgate"'
    assert unauthorised.headers["X-Request-ID"] == "no-token"


def test_a_handler_that_raises_is_served_again_by_flask(client, auth, served, monkeypatch):
    calls = []

    def down(state):
        calls.append(state)
        raise DatabaseUnavailable("database test.db is gone")

    monkeypatch.setattr(service, "status", down)
    first, _ = served(client, "/api/v1/status", headers=auth("read"))
    response, path = served(client, "/api/v1/status", headers={**auth("read"), "X-Request-ID": "outage"})
    assert path == "flask" and len(calls) == 4  # direct, then the Flask view, for each request
    assert response.status_code == 503 and response.json["error"]["code"] == "service_unavailable"
    assert response.headers["Retry-After"] and response.headers["X-Request-ID"] == "outage"
    # One request, one count, although two paths ran its handler.
    assert int(first.headers["X-RateLimit-Remaining"]) == int(response.headers["X-RateLimit-Remaining"]) + 1


def test_an_error_in_admission_is_raised_again_by_flask(client, auth, served, monkeypatch):
    from app.core import auth as core_auth

    def down(_token_id):
        raise DatabaseUnavailable("database test.db is gone")

    monkeypatch.setattr(core_auth, "_lookup", down)
    response, path = served(client, "/api/v1/status", headers={**auth("read"), "X-Request-ID": "lookup"})
    assert path == "flask" and response.status_code == 503
    assert response.headers["X-Request-ID"] == "lookup"


def test_the_direct_path_logs_access_as_flask_does(client, caplog):
    with caplog.at_level(logging.DEBUG, logger="http"):
        client.get("/api/v1/status/health", headers={"X-Request-ID": "logged"})
    assert any(r.getMessage().startswith("GET /api/v1/status/health 200 ") and "(request logged)" in r.getMessage()
               for r in caplog.records)


def test_the_token_lookup_needs_no_pooled_connection(client, auth):
    db = database.obj
    assert client.get("/api/v1/status", headers=auth("read")).status_code == 200
    assert db._own_conn is not None and not db._in_use
    # While another greenlet reads on the process's own connection, a read takes a pooled one instead.
    with db._own_lock:
        assert db.read_now("SELECT 1", ()) == [(1,)]
        assert db._in_use
    database.close()


def test_a_route_of_a_blueprint_with_request_hooks_cannot_be_direct():
    from flask import Blueprint

    app = Flask("hooks")
    blueprint = Blueprint("hooked", __name__)
    blueprint.before_request(lambda: None)

    @blueprint.get("/probe")
    def probe():
        return "ok"

    probe._lockgate_direct = lambda state: ({}, 200)
    app.register_blueprint(blueprint)
    with pytest.raises(RuntimeError, match="request hooks"):
        direct.direct_routes(app)
