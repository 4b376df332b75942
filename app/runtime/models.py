"""Runtime agents (their DSL and its parsed form) and their executions, each the domain record of a job."""

from peewee import CharField, DateTimeField, FloatField, ForeignKeyField, IntegerField, TextField

from app.core.db import BaseModel
from app.core.models import Job

QUEUED, RUNNING, COMPLETED, FAILED, TIMED_OUT, CANCELLED = (
    "queued", "running", "completed", "failed", "timed_out", "cancelled")
STATUSES = (QUEUED, RUNNING, COMPLETED, FAILED, TIMED_OUT, CANCELLED)
UNFINISHED = (QUEUED, RUNNING)
FINISHED = (COMPLETED, FAILED, TIMED_OUT, CANCELLED)
# Why an execution did not complete.
REQUIREMENT_UNMET, PROVIDER_ERROR, TIMEOUT, CANCELLED_CODE, WORKER_LOST, INTERNAL, GONE = (
    "requirement_unmet", "provider_error", "timeout", "cancelled", "worker_lost", "internal_error", "agent_gone")


class RuntimeAgent(BaseModel):
    id = CharField(primary_key=True, max_length=200)
    name = CharField(max_length=200, unique=True)
    description = CharField(max_length=2000, default="")
    dsl = TextField()
    program = TextField()  # Program.to_dict() as JSON
    agent_name = CharField(max_length=200)  # the agent of the program that runs
    options = TextField(default="{}")  # provider options of an SDK-style agent (model, temperature, ...)
    created_at = DateTimeField()
    updated_at = DateTimeField()
    last_activity_at = DateTimeField()

    class Meta:
        table_name = "runtime_agent"


class RuntimeExecution(BaseModel):
    id = CharField(primary_key=True, max_length=40)
    agent_id = CharField(max_length=200, null=True, index=True)  # None: a workflow given as DSL source
    job = ForeignKeyField(Job, column_name="job_id", null=True, on_delete="CASCADE", unique=True)
    idempotency_key = CharField(max_length=200, null=True)
    origin = CharField(max_length=16)  # execute | workflow
    status = CharField(max_length=16)
    input = TextField(default="")
    parameters = TextField(default="{}")
    program = TextField(null=True)  # a workflow's own program; None: the agent's
    agent_name = CharField(max_length=200, null=True)  # the agent of that program that runs
    result = TextField(null=True)
    error = TextField(null=True)
    error_code = CharField(max_length=32, null=True)  # why it did not complete (ERROR_CODES)
    tool_calls = TextField(default="[]")
    attempts = IntegerField(default=0)
    timeout_secs = FloatField(null=True)
    cpu_ms = FloatField(null=True)
    memory_bytes = IntegerField(null=True)
    created_at = DateTimeField()
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)

    class Meta:
        table_name = "runtime_execution"
        indexes = ((("agent_id", "idempotency_key"), True), (("agent_id", "created_at"), False))
