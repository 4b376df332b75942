import pytest

from app.core.db import connection
from app.core.errors import Conflict
from app.core.models import Lease
from app.sessions import turns
from tests.sessions.helpers import published


@pytest.fixture
def settings(app):
    return app.extensions["lockgate"].settings


def test_a_turn_that_lost_its_lock_stores_no_reply(settings, create, client, auth):
    session_id = create()["id"]
    with connection():
        turn = turns.begin_turn(settings, session_id, "hello")
        # Another worker took the session over while this turn talked to the model.
        Lease.update(owner="elsewhere:1:abc").where(Lease.name == f"session:{session_id}").execute()
        with pytest.raises(Conflict, match="another message took over"):
            turn.run()
    messages = client.get(f"/api/v1/sessions/{session_id}/messages", headers=auth("read")).json["messages"]
    assert [m["role"] for m in messages] == ["user"]
    assert published("message.sent") == []
    assert client.get(f"/api/v1/sessions/{session_id}", headers=auth("read")).json["turn_count"] == 0


def test_the_history_window_opens_with_a_user_message(settings, create, send, monkeypatch):
    session_id = create()["id"]
    for n in range(3):
        send(session_id, f"turn {n}")
    monkeypatch.setattr(turns, "HISTORY_MESSAGES", 4)
    with connection():
        turn = turns.begin_turn(settings, session_id, "latest")
        turn.lock.release()
    # Seqs 3..6 fit the window; 3 is a user message, so the window starts there.
    assert [(m.role, m.content) for m in turn.prompt[1:]] == [
        ("user", "turn 1"), ("assistant", "echo: turn 1"), ("user", "turn 2"), ("assistant", "echo: turn 2"),
        ("user", "latest")]
    # "latest" got no reply (its turn never ran). A window of two would open with
    # the reply to "turn 2", so it is cut to start at the next user message.
    monkeypatch.setattr(turns, "HISTORY_MESSAGES", 2)
    with connection():
        turn = turns.begin_turn(settings, session_id, "again")
        turn.lock.release()
    assert [(m.role, m.content) for m in turn.prompt[1:]] == [("user", "latest"), ("user", "again")]
