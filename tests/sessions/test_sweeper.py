from datetime import timedelta

from app.core.db import connection, utcnow
from app.core.settings import Settings
from app.sessions import service
from app.sessions.models import AgentSession
from app.sessions.sweeper import sweep_once
from tests.sessions.helpers import published


def age(session_id, seconds):
    with connection():
        AgentSession.update(last_activity=utcnow() - timedelta(seconds=seconds)).where(
            AgentSession.id == session_id).execute()


def status_of(client, auth, session_id):
    return client.get(f"/api/v1/sessions/{session_id}", headers=auth("read")).json["status"]


def test_inactive_sessions_go_idle_then_end(app, create, client, auth, send, assert_tallies_match):
    settings = app.extensions["lockgate"].settings  # idle after 300 s, end after 3600 s
    fresh, quiet, gone, idle_gone = (create()["id"] for _ in range(4))
    age(quiet, 400)
    age(gone, 4000)
    age(idle_gone, 400)
    with connection():
        assert sweep_once(settings) == (2, 1)  # quiet and idle_gone idle; gone terminated
    assert [status_of(client, auth, s) for s in (fresh, quiet, gone, idle_gone)] == [
        "active", "idle", "terminated", "idle"]
    age(idle_gone, 4000)
    with connection():
        assert sweep_once(settings) == (0, 1)
    assert status_of(client, auth, idle_gone) == "terminated"

    idled = published("session.idle")
    assert sorted(payload["id"] for _, payload in idled) == sorted([quiet, idle_gone])
    quiet_view = client.get(f"/api/v1/sessions/{quiet}", headers=auth("read")).json
    assert ("session.idle", quiet_view) in idled
    ended = published("session.terminated")
    assert [(payload["id"], payload["reason"], payload["status"]) for _, payload in ended] == [
        (gone, "timeout", "terminated"), (idle_gone, "timeout", "terminated")]
    assert_tallies_match()
    # Idle sessions are listed under their status, and a message wakes one.
    idle_list = client.get("/api/v1/sessions?status=idle", headers=auth("read")).json
    assert [s["id"] for s in idle_list["sessions"]] == [quiet] and idle_list["total"] == 1
    assert send(quiet, "back again").status_code == 200
    assert status_of(client, auth, quiet) == "active"
    assert_tallies_match()


def test_the_sweep_works_in_batches(app, create, monkeypatch, assert_tallies_match):
    monkeypatch.setattr(service, "SWEEP_BATCH", 2)
    ids = [create()["id"] for _ in range(5)]
    for session_id in ids:
        age(session_id, 400)
    with connection():
        assert sweep_once(app.extensions["lockgate"].settings) == (5, 0)
    assert len(published("session.idle")) == 5
    assert_tallies_match()


def test_timeouts_are_read_live(tmp_path, app, create):
    session_id = create()["id"]
    age(session_id, 5)
    short = Settings(tmp_path / "none.toml", overrides={"agent.idle_after_secs": 2, "agent.session_timeout_secs": 4})
    with connection():
        assert sweep_once(short) == (0, 1)
