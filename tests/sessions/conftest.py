import pytest

from app.core.db import connection
from app.sessions.models import AgentSession, SessionTally


@pytest.fixture
def create(client, auth):
    """POST a session and return its body (asserting 201)."""

    def make(**body):
        response = client.post("/api/v1/sessions", json=body, headers=auth("write"))
        assert response.status_code == 201, response.json
        return response.json

    return make


@pytest.fixture
def send(client, auth):
    """POST a message; returns the response."""

    def post(session_id, content, **extra):
        return client.post(f"/api/v1/sessions/{session_id}/messages", json={"content": content, **extra},
                           headers=auth("write"))

    return post


@pytest.fixture
def assert_tallies_match():
    """The kept counts equal a real COUNT over the sessions, for every (status, channel)."""

    def check():
        with connection():
            real = {}
            for row in AgentSession.select(AgentSession.status, AgentSession.channel):
                real[(row.status, row.channel)] = real.get((row.status, row.channel), 0) + 1
            kept = {(t.status, t.channel): t.count for t in SessionTally.select() if t.count}
        assert kept == real

    return check
