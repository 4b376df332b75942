"""Sessions go idle and end by time, on a real gunicorn with short timeouts."""

import json
from datetime import datetime

import pytest

from app.core.db import connection, init_database
from app.core.models import Event
from tests.support.http import Api
from tests.support.server import RELAXED_LIMITS, serve
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory, backend):
    config = {"agent": {"idle_after_secs": 1, "session_timeout_secs": 2, "sweep_interval_secs": 0.2}}
    with serve(tmp_path_factory.mktemp("sessions"), backend, {**RELAXED_LIMITS, **config}) as instance:
        yield instance


def events_for(server, session_id):
    """(topic, payload, published at) of the session's events, read from the server's bus table."""
    init_database(server.database_url)
    with connection():
        rows = list(Event.select().order_by(Event.id))
    found = [(row.topic, json.loads(row.payload), row.created_at) for row in rows]
    return [(topic, payload, at) for topic, payload, at in found
            if payload.get("id") == session_id or payload.get("session_id") == session_id]


def parse(stamp):
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def api(server):
    client = Api(server)
    yield client
    client.close()


def test_idle_then_active_again_then_terminated(server, api):
    session = api.new_session(user_id="sleepy")
    other = api.new_session()

    idle = wait_until(lambda: (s := api.session(session["id"]))["status"] == "idle" and s, timeout=10)
    assert idle["last_activity"] == session["created_at"]
    assert any(s["id"] == session["id"] for s in api.get("/sessions", status="idle").json()["sessions"])

    # A message makes an idle session active again.
    assert api.send(session["id"], "wake up").status_code == 200
    awake = api.session(session["id"])
    assert awake["status"] == "active" and awake["turn_count"] == 1

    ended = wait_until(lambda: (s := api.session(session["id"]))["status"] == "terminated" and s, timeout=10)
    assert ended["last_activity"] == awake["last_activity"]
    refused = api.send(session["id"], "too late")
    assert refused.status_code == 409
    wait_until(lambda: api.session(other["id"])["status"] == "terminated", timeout=10)
    terminated = api.get("/sessions", status="terminated").json()
    assert {session["id"], other["id"]} <= {s["id"] for s in terminated["sessions"]}
    assert terminated["total"] >= 2
    assert api.get("/status").json()["active_sessions"] == 0

    events = events_for(server, session["id"])
    assert [topic for topic, _, _ in events] == [
        "session.created", "session.idle", "message.received", "message.sent", "session.idle", "session.terminated"]
    # Each change came after its timeout without activity, not before.
    idle_at, last_activity = events[1][2], parse(session["created_at"])
    assert (idle_at - last_activity).total_seconds() >= 1
    terminated_payload, terminated_at = events[-1][1], events[-1][2]
    assert (terminated_at - parse(awake["last_activity"])).total_seconds() >= 2
    assert terminated_payload == {**api.session(session["id"]), "reason": "timeout"}
    assert events[1][1] == {**idle, "status": "idle"}
