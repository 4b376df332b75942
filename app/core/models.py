"""Tables the platform itself needs: tokens, leases, the event bus, logs, durable jobs, supervised units.

Rate-limit counters have a table too (migration m0001), written with plain SQL by ``app.core.ratelimit``.
"""

from peewee import (
    AutoField,
    CharField,
    DateTimeField,
    IntegerField,
    SmallIntegerField,
    TextField,
)

from app.core.db import BaseModel, utcnow


class SchemaMigration(BaseModel):
    name = CharField(primary_key=True, max_length=200)
    applied_at = DateTimeField(default=utcnow)


class ApiToken(BaseModel):
    id = CharField(primary_key=True, max_length=32)
    name = CharField(max_length=200)
    token_hash = CharField(max_length=64)
    scopes = CharField(max_length=200)  # space separated
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(null=True)
    revoked_at = DateTimeField(null=True)


class Lease(BaseModel):
    name = CharField(primary_key=True, max_length=200)
    owner = CharField(max_length=200)
    expires_at = DateTimeField()


class Event(BaseModel):
    id = AutoField()
    topic = CharField(max_length=100, index=True)
    payload = TextField()  # JSON
    created_at = DateTimeField(default=utcnow)


class LogEntry(BaseModel):
    id = AutoField()
    timestamp = DateTimeField(index=True)
    level = SmallIntegerField()
    module = CharField(max_length=200)
    message = TextField()
    session_id = CharField(max_length=64, null=True)


class Job(BaseModel):
    """A unit of durable work (see ``app.core.jobs``); areas keep their own record pointing at it."""

    id = CharField(primary_key=True, max_length=40)
    kind = CharField(max_length=100)
    partition_key = CharField(max_length=200)  # what fairness is shared across: one hook, one agent, one tool
    payload = TextField()  # JSON
    state = CharField(max_length=16)  # pending | succeeded | failed | cancelled
    attempts = IntegerField(default=0)
    failures = IntegerField(default=0)  # failed attempts since the last requeue: the place in the retry schedule
    next_run_at = DateTimeField(null=True)
    claim_token = CharField(max_length=32, null=True)
    claimed_by = CharField(max_length=200, null=True)
    claimed_until = DateTimeField(null=True, index=True)
    created_at = DateTimeField(default=utcnow)
    finished_at = DateTimeField(null=True, index=True)

    class Meta:
        indexes = (
            (("kind", "state", "partition_key", "next_run_at"), False),  # a partition's due jobs, oldest first
        )


class UnitState(BaseModel):
    """What a supervised unit is doing (see ``app.core.supervisor``), readable from every worker.

    One row per singleton unit (``id`` is its name, ``owner`` its current
    holder); one per worker for units that run in every worker (``name@owner``).
    """

    id = CharField(primary_key=True, max_length=400)
    name = CharField(max_length=200, index=True)
    owner = CharField(max_length=200)
    state = CharField(max_length=16)  # starting | running | backoff | error | stopped
    since = DateTimeField()
    last_error = TextField(null=True)
    restarts = IntegerField(default=0)
