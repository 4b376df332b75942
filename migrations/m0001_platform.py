"""Tokens, leases, the event bus, log entries and shared rate-limit counters."""

from peewee import (
    AutoField,
    BigIntegerField,
    CharField,
    DateTimeField,
    IntegerField,
    SmallIntegerField,
    TextField,
)

from migrations import frozen_model


def upgrade(db):
    token = frozen_model(db, "api_token", {
        "id": CharField(primary_key=True, max_length=32),
        "name": CharField(max_length=200),
        "token_hash": CharField(max_length=64),
        "scopes": CharField(max_length=200),
        "created_at": DateTimeField(),
        "expires_at": DateTimeField(null=True),
        "revoked_at": DateTimeField(null=True),
    })
    lease = frozen_model(db, "lease", {
        "name": CharField(primary_key=True, max_length=200),
        "owner": CharField(max_length=200),
        "expires_at": DateTimeField(),
    })
    event = frozen_model(db, "event", {
        "id": AutoField(),
        "topic": CharField(max_length=100, index=True),
        "payload": TextField(),
        "created_at": DateTimeField(),
    })
    log_entry = frozen_model(db, "log_entry", {
        "id": AutoField(),
        "timestamp": DateTimeField(index=True),
        "level": SmallIntegerField(),
        "module": CharField(max_length=200),
        "message": TextField(),
        "session_id": CharField(max_length=64, null=True),
    })
    rate_counter = frozen_model(db, "rate_counter", {
        "key": CharField(primary_key=True, max_length=300),
        "window_start": BigIntegerField(),
        "count": IntegerField(),
    })
    db.create_tables([token, lease, event, log_entry, rate_counter])
