"""The runtime API: agents defined in the Symbiont DSL, and their executions (each the record of a job)."""

from peewee import CharField, DateTimeField, FloatField, IntegerField, TextField

from migrations import frozen_model


def upgrade(db):
    agent = frozen_model(db, "runtime_agent", {
        "id": CharField(primary_key=True, max_length=200),
        "name": CharField(max_length=200, unique=True),
        "description": CharField(max_length=2000, default=""),
        "dsl": TextField(),
        "program": TextField(),
        "agent_name": CharField(max_length=200),
        "options": TextField(default="{}"),
        "created_at": DateTimeField(),
        "updated_at": DateTimeField(),
        "last_activity_at": DateTimeField(),
    })
    execution = frozen_model(db, "runtime_execution", {
        "id": CharField(primary_key=True, max_length=40),
        "agent_id": CharField(max_length=200, null=True, index=True),
        "idempotency_key": CharField(max_length=200, null=True),
        "origin": CharField(max_length=16),
        "status": CharField(max_length=16),
        "input": TextField(default=""),
        "parameters": TextField(default="{}"),
        "program": TextField(null=True),
        "agent_name": CharField(max_length=200, null=True),
        "result": TextField(null=True),
        "error": TextField(null=True),
        "error_code": CharField(max_length=32, null=True),
        "tool_calls": TextField(default="[]"),
        "attempts": IntegerField(default=0),
        "timeout_secs": FloatField(null=True),
        "cpu_ms": FloatField(null=True),
        "memory_bytes": IntegerField(null=True),
        "created_at": DateTimeField(),
        "started_at": DateTimeField(null=True),
        "finished_at": DateTimeField(null=True),
    }, indexes=((("agent_id", "idempotency_key"), True), (("agent_id", "created_at"), False)))
    db.create_tables([agent, execution])
    db.execute_sql("ALTER TABLE runtime_execution ADD COLUMN job_id VARCHAR(40) REFERENCES job (id) ON DELETE CASCADE")
    db.execute_sql("CREATE UNIQUE INDEX runtime_execution_job_id ON runtime_execution (job_id)")
