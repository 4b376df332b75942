"""The status endpoint over HTTP against real gunicorn processes with two workers."""

import pytest

from tests.support.http import fresh_get

pytestmark = pytest.mark.e2e


def test_status_fields(server, backend):
    body = fresh_get(f"{server.url}/api/v1/status", headers=server.headers("read")).json()
    assert body["status"] == "healthy"
    assert body["version"] == "0.1.0"
    assert isinstance(body["uptime_secs"], int) and body["uptime_secs"] >= 0
    assert isinstance(body["active_sessions"], int)
    assert set(body["channels"]) == {"connected", "total"}
    assert set(body["plugins"]) == {"loaded", "total"}
    assert body["memory"]["backend"] == backend and isinstance(body["memory"]["entries"], int)
    assert body["provider"] == {"name": "echo", "model": "echo-1"}
