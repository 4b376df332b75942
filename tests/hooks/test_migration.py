"""Deliveries written before durable jobs existed keep their status, attempts and schedule once migrated."""

import importlib
from datetime import timedelta

from app.core import migrate
from app.core.db import connection, database, init_database, utcnow
from app.core.models import SchemaMigration

BEFORE_JOBS = "m0004_jobs"


def apply_until(name: str) -> None:
    database.create_tables([SchemaMigration], safe=True)
    for earlier in migrate.discover():
        if earlier >= name:
            return
        importlib.import_module(f"migrations.{earlier}").upgrade(database.obj)
        SchemaMigration.create(name=earlier, applied_at=utcnow())


def insert(table: str, row: dict) -> None:
    columns = ", ".join(row)
    marks = ", ".join([database.obj.param] * len(row))
    database.execute_sql(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(row.values()))


def test_existing_deliveries_become_jobs(db_url):
    from app.core import jobs
    from app.hooks import outbox, service
    from app.hooks.delivery import KIND

    init_database(db_url)
    now = utcnow()
    later = now + timedelta(minutes=5)
    with connection():
        apply_until(BEFORE_JOBS)
        insert("hook", {"id": "hook_1", "url": "http://127.0.0.1:9/x", "events": '["*"]', "secret": "whsec_x",
                        "active": True, "consecutive_failures": 1, "created_at": now, "updated_at": now})
        common = {"hook_id": "hook_1", "event": "session.created", "body": "{}", "created_at": now}
        insert("hook_delivery", {**common, "id": "dlv_done", "status": "succeeded", "failures": 0,
                                 "attempt_count": 1, "completed_at": now})
        insert("hook_delivery", {**common, "id": "dlv_waiting", "status": "pending", "failures": 1,
                                 "attempt_count": 1, "next_attempt_at": later, "claim_token": "t" * 32,
                                 "claimed_by": "old-worker", "claimed_until": now - timedelta(seconds=1)})
        insert("hook_attempt", {"delivery_id": "dlv_waiting", "number": 1, "started_at": now, "duration_ms": 3,
                                "status_code": 503, "outcome": "retrying", "next_retry_at": later})
        assert BEFORE_JOBS in migrate.upgrade()

        listed = {d["id"]: d for d in service.list_deliveries("hook_1", None, None, 10)}
        assert listed["dlv_done"]["status"] == "succeeded" and listed["dlv_done"]["attempt_count"] == 1
        assert listed["dlv_done"]["completed_at"] is not None
        waiting = listed["dlv_waiting"]
        assert waiting["status"] == "pending" and waiting["next_attempt_at"] is not None
        assert [a["status_code"] for a in waiting["attempts"]] == [503]

        with database.atomic():
            database.execute_sql(f"UPDATE job SET next_run_at = {database.obj.param}", (now,))
        (claimed,) = jobs.claim(KIND, 10, 10, 30.0, "new-worker")  # the finished one is not claimable
        assert claimed.payload == {"delivery": "dlv_waiting"} and claimed.partition == "hook_1"
        assert claimed.attempt == 2 and claimed.failures == 1
        outbox.prepare([claimed])
        assert claimed.data.url == "http://127.0.0.1:9/x" and claimed.data.delivery_id == "dlv_waiting"
