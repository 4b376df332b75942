"""The status endpoints in process: what a probe sees when the database is gone."""

from app.core.db import SqliteDatabase, database


def test_health_is_503_when_the_database_is_unreachable(app):
    client = app.test_client()
    assert client.get("/api/v1/status/health").json == {"healthy": True}
    database.initialize(SqliteDatabase("/proc/no-such-dir/lockgate.db"))
    response = client.get("/api/v1/status/health")
    assert response.status_code == 503
    assert response.json == {"healthy": False}


def test_status_figures_are_shared_briefly_and_renewed_by_this_process_own_writes(client, auth, monkeypatch):
    from app.core.db import connection
    from app.status import service

    def dropped_slow():
        return client.get("/api/v1/status", headers=auth("read")).json["streams"]["dropped_slow"]

    monkeypatch.setattr(service, "SNAPSHOT_SECS", 3600.0)
    assert dropped_slow() == 0
    # Another worker's write: raw SQL, which this process does not count as one of its own.
    with connection():
        database.execute_sql("INSERT INTO stream_tally (name, count) VALUES ('dropped_slow', 7)")
    assert dropped_slow() == 0  # the snapshot is still young
    assert client.post("/api/v1/sessions", json={}, headers=auth("write")).status_code == 201
    assert dropped_slow() == 7  # a write of this process renews it at once

    with connection():
        database.execute_sql("UPDATE stream_tally SET count = 9 WHERE name = 'dropped_slow'")
    monkeypatch.setattr(service, "SNAPSHOT_SECS", 0.0)
    assert dropped_slow() == 9  # and so does age
