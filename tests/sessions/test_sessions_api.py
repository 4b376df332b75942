import re

import pytest

from tests.sessions.helpers import published

SESSION_ID = re.compile(r"^sess_[0-9a-f]{24}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_create_returns_the_session(create, client, auth):
    body = create(channel="api", user_id="user_123", metadata={"source": "web-app"})
    assert SESSION_ID.match(body["id"])
    assert ISO.match(body["created_at"]) and body["last_activity"] == body["created_at"]
    assert body == {
        "id": body["id"], "channel": "api", "user_id": "user_123", "status": "active",
        "created_at": body["created_at"], "last_activity": body["created_at"], "turn_count": 0,
        "token_usage": {"input": 0, "output": 0}, "metadata": {"source": "web-app"},
    }
    assert client.get(f"/api/v1/sessions/{body['id']}", headers=auth("read")).json == body
    assert published("session.created") == [("session.created", body)]


def test_defaults(create):
    body = create()
    assert (body["channel"], body["user_id"], body["metadata"]) == ("api", None, {})


def test_channels_configured_under_channels_config_are_known(app_factory, auth):
    app = app_factory({"channels_config": {"telegram": {"bot_token": "123:abc"}}})
    client = app.test_client()
    from app.core.auth import create_token
    from app.core.db import connection

    with connection():
        token = create_token("t", ["write"])[1]
    response = client.post("/api/v1/sessions", json={"channel": "telegram"},
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201 and response.json["channel"] == "telegram"
    response = client.post("/api/v1/sessions", json={"channel": "discord"},
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 400
    assert response.json["error"]["details"] == {"channel": ["expected one of: api, telegram"]}


@pytest.mark.parametrize("body, field", [
    ({"channel": "irc"}, "channel"),
    ({"channel": ""}, "channel"),
    ({"channel": 5}, "channel"),
    ({"user_id": "u" * 201}, "user_id"),
    ({"user_id": ""}, "user_id"),
    ({"metadata": "not an object"}, "metadata"),
    ({"metadata": {"blob": "x" * 17_000}}, "metadata"),
    ({"unexpected": 1}, "unexpected"),
])
def test_bad_input_is_a_400_naming_the_field(client, auth, body, field):
    response = client.post("/api/v1/sessions", json=body, headers=auth("write"))
    assert response.status_code == 400
    assert response.json["error"]["code"] == "bad_request"
    assert field in response.json["error"]["details"]


def test_body_that_is_not_json_is_a_400(client, auth):
    response = client.post("/api/v1/sessions", data="{nope", headers={**auth("write"),
                                                                       "Content-Type": "application/json"})
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_request"


def test_unknown_session_is_a_404_in_the_reference_format(client, auth):
    for method, path in (("get", "/api/v1/sessions/sess_xyz"), ("delete", "/api/v1/sessions/sess_xyz"),
                         ("get", "/api/v1/sessions/sess_xyz/messages")):
        response = getattr(client, method)(path, headers=auth("write"))
        assert response.status_code == 404
        assert response.json == {"error": {"code": "not_found", "message": "Session sess_xyz not found",
                                           "details": None}}
    response = client.post("/api/v1/sessions/sess_xyz/messages", json={"content": "hi"}, headers=auth("write"))
    assert response.status_code == 404


def test_delete_terminates_once(create, client, auth, assert_tallies_match):
    session = create(user_id="u1")
    response = client.delete(f"/api/v1/sessions/{session['id']}", headers=auth("write"))
    assert response.status_code == 204 and response.data == b""
    after = client.get(f"/api/v1/sessions/{session['id']}", headers=auth("read")).json
    assert after["status"] == "terminated"
    again = client.delete(f"/api/v1/sessions/{session['id']}", headers=auth("write"))
    assert again.status_code == 409
    assert again.json["error"] == {"code": "conflict", "message": f"Session {session['id']} is already terminated",
                                   "details": None}
    assert published("session.terminated") == [("session.terminated", {**after, "reason": "deleted"})]
    assert_tallies_match()


def test_list_filters_pages_and_totals(create, client, auth, assert_tallies_match):
    made = [create(user_id=f"u{n}") for n in range(7)]
    for session in made[:2]:
        client.delete(f"/api/v1/sessions/{session['id']}", headers=auth("write"))

    def listing(**query):
        response = client.get("/api/v1/sessions", query_string=query, headers=auth("read"))
        assert response.status_code == 200, response.json
        return response.json

    active = listing()
    assert active["total"] == 5
    # Newest first, in the reference's shape.
    assert [s["id"] for s in active["sessions"]] == [s["id"] for s in reversed(made[2:])]
    assert set(active["sessions"][0]) == {"id", "channel", "user_id", "status", "created_at", "last_activity"}
    terminated = listing(status="terminated")
    assert terminated["total"] == 2 and {s["status"] for s in terminated["sessions"]} == {"terminated"}
    assert listing(status="idle") == {"sessions": [], "total": 0}
    assert listing(channel="api")["total"] == 5
    assert listing(channel="telegram") == {"sessions": [], "total": 0}
    pages = [listing(limit=2, offset=offset) for offset in (0, 2, 4)]
    assert [len(page["sessions"]) for page in pages] == [2, 2, 1]
    assert {page["total"] for page in pages} == {5}
    assert [s["id"] for page in pages for s in page["sessions"]] == [s["id"] for s in active["sessions"]]
    assert listing(offset=10) == {"sessions": [], "total": 5}
    assert_tallies_match()


@pytest.mark.parametrize("query", [
    {"limit": 0}, {"limit": 201}, {"limit": "ten"}, {"offset": -1}, {"offset": 10**30},
    {"status": "sleeping"}, {"channel": "c" * 65},
])
def test_bad_list_queries_are_400(client, auth, query):
    response = client.get("/api/v1/sessions", query_string=query, headers=auth("read"))
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_request"


def test_scopes(client, auth, create):
    assert client.post("/api/v1/sessions", json={}, headers=auth("read")).status_code == 403
    session = create()
    assert client.get(f"/api/v1/sessions/{session['id']}", headers=auth("read")).status_code == 200
    assert client.delete(f"/api/v1/sessions/{session['id']}", headers=auth("read")).status_code == 403
    assert client.get("/api/v1/sessions").status_code == 401


def test_status_reports_active_sessions_and_memory(create, client, auth, send, backend):
    sessions = [create() for _ in range(3)]
    client.delete(f"/api/v1/sessions/{sessions[0]['id']}", headers=auth("write"))
    send(sessions[1]["id"], "remember the lighthouse")
    status = client.get("/api/v1/status", headers=auth("read")).json
    assert status["active_sessions"] == 2
    # The full-text search of the database in use serves memory.
    assert status["memory"] == {"backend": backend, "entries": 1}
