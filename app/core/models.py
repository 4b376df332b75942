"""Tables the platform itself needs: tokens, leases, the event bus, logs, rate counters."""

from peewee import (
    AutoField,
    BigIntegerField,
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

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()


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


class RateCounter(BaseModel):
    key = CharField(primary_key=True, max_length=300)
    window_start = BigIntegerField()
    count = IntegerField()
