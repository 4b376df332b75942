"""Sessions, their transcripts, and session counts per (status, channel)."""

from peewee import (
    AutoField,
    BigIntegerField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from app.core.db import BaseModel

ACTIVE, IDLE, TERMINATED = "active", "idle", "terminated"
STATUSES = (ACTIVE, IDLE, TERMINATED)


class AgentSession(BaseModel):
    id = CharField(primary_key=True, max_length=40)
    channel = CharField(max_length=64)
    user_id = CharField(max_length=200, null=True)
    status = CharField(max_length=16)
    created_at = DateTimeField()
    last_activity = DateTimeField()
    turn_count = IntegerField(default=0)
    # The seq of the newest message: assigned by an atomic increment, never reused.
    message_count = IntegerField(default=0)
    input_tokens = BigIntegerField(default=0)
    output_tokens = BigIntegerField(default=0)
    metadata = TextField()  # JSON object


class SessionMessage(BaseModel):
    id = CharField(primary_key=True, max_length=40)
    session = ForeignKeyField(AgentSession, column_name="session_id", on_delete="CASCADE")
    seq = IntegerField()  # 1, 2, ... within the session
    role = CharField(max_length=16)  # user | assistant
    content = TextField()
    # JSON list of {id, name, arguments, result, is_error}: what the API shows.
    tool_calls = TextField()
    # JSON list of the tool rounds before the answer, as the provider saw them,
    # so later turns replay the conversation exactly.
    steps = TextField()
    input_tokens = IntegerField(null=True)
    output_tokens = IntegerField(null=True)
    created_at = DateTimeField()


class SessionTally(BaseModel):
    """How many sessions have each (status, channel).

    Kept in the same transaction as every status change, so list totals are
    one indexed lookup instead of a COUNT over every matching session.
    """

    id = AutoField()
    status = CharField(max_length=16)
    channel = CharField(max_length=64)
    count = BigIntegerField(default=0)
