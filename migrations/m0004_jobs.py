"""Durable jobs: the job table, and webhook deliveries become the domain records of jobs.

Every delivery gets a job carrying its scheduling state (status, attempts,
retry time, claim), which then leaves hook_delivery: one place holds it.
"""

from peewee import CharField, DateTimeField, IntegerField, TextField

from migrations import frozen_model

DELIVERY_KIND = "hooks.deliver"
DELIVERY_PAYLOAD = """'{"delivery":"' || id || '"}'"""  # delivery ids are hex: nothing to escape

MOVED_INDEXES = (
    "frozen_hook_delivery_hook_id_status_next_attempt_at",
    "frozen_hook_delivery_claimed_until",
    "frozen_hook_delivery_completed_at",
)
MOVED_COLUMNS = ("status", "next_attempt_at", "failures", "attempt_count", "claim_token", "claimed_by",
                 "claimed_until", "completed_at")


def upgrade(db):
    job = frozen_model(db, "job", {
        "id": CharField(primary_key=True, max_length=40),
        "kind": CharField(max_length=100),
        "partition_key": CharField(max_length=200),
        "payload": TextField(),
        "state": CharField(max_length=16),
        "attempts": IntegerField(default=0),
        "failures": IntegerField(default=0),
        "next_run_at": DateTimeField(null=True),
        "claim_token": CharField(max_length=32, null=True),
        "claimed_by": CharField(max_length=200, null=True),
        "claimed_until": DateTimeField(null=True, index=True),
        "created_at": DateTimeField(),
        "finished_at": DateTimeField(null=True, index=True),
    }, indexes=(
        (("kind", "state", "partition_key", "next_run_at"), False),
    ))
    db.create_tables([job])
    db.execute_sql("ALTER TABLE hook_delivery ADD COLUMN job_id VARCHAR(40) REFERENCES job (id) ON DELETE CASCADE")
    # Existing deliveries keep their ids as their jobs' ids; claims in flight lapse with the old workers.
    db.execute_sql(
        "INSERT INTO job (id, kind, partition_key, payload, state, attempts, failures, next_run_at, "
        "created_at, finished_at) "
        f"SELECT id, '{DELIVERY_KIND}', hook_id, {DELIVERY_PAYLOAD}, status, attempt_count, failures, "
        "next_attempt_at, created_at, completed_at FROM hook_delivery")
    db.execute_sql("UPDATE hook_delivery SET job_id = id")
    for index in MOVED_INDEXES:
        db.execute_sql(f"DROP INDEX IF EXISTS {index}")
    for column in MOVED_COLUMNS:
        db.execute_sql(f"ALTER TABLE hook_delivery DROP COLUMN {column}")
    db.execute_sql("CREATE UNIQUE INDEX hook_delivery_job_id ON hook_delivery (job_id)")
