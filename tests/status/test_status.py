"""The status endpoints in process: what a probe sees when the database is gone."""

from app.core.db import SqliteDatabase, database


def test_health_is_503_when_the_database_is_unreachable(app):
    client = app.test_client()
    assert client.get("/api/v1/status/health").json == {"healthy": True}
    database.initialize(SqliteDatabase("/proc/no-such-dir/lockgate.db"))
    response = client.get("/api/v1/status/health")
    assert response.status_code == 503
    assert response.json == {"healthy": False}
