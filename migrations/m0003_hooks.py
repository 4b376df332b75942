"""Webhooks: hook, hook_delivery (the outbox) and hook_attempt."""

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from migrations import frozen_model


def upgrade(db):
    hook = frozen_model(db, "hook", {
        "id": CharField(primary_key=True, max_length=40),
        "url": CharField(max_length=2048),
        "events": TextField(),
        "secret": CharField(max_length=200),
        "active": BooleanField(default=True, index=True),
        "consecutive_failures": IntegerField(default=0),
        "disabled_reason": CharField(max_length=300, null=True),
        "created_at": DateTimeField(),
        "updated_at": DateTimeField(),
    })
    delivery = frozen_model(db, "hook_delivery", {
        "id": CharField(primary_key=True, max_length=40),
        "hook": ForeignKeyField(hook, on_delete="CASCADE", index=False),
        "event": CharField(max_length=100),
        "body": TextField(),
        "status": CharField(max_length=16, default="pending"),
        "next_attempt_at": DateTimeField(null=True),
        "failures": IntegerField(default=0),
        "attempt_count": IntegerField(default=0),
        "claim_token": CharField(max_length=32, null=True),
        "claimed_by": CharField(max_length=200, null=True),
        "claimed_until": DateTimeField(null=True, index=True),
        "created_at": DateTimeField(),
        "completed_at": DateTimeField(null=True, index=True),
    }, indexes=(
        (("hook", "status", "next_attempt_at"), False),
        (("hook", "created_at"), False),
    ))
    attempt = frozen_model(db, "hook_attempt", {
        "id": AutoField(),
        "delivery": ForeignKeyField(delivery, on_delete="CASCADE", index=True),
        "number": IntegerField(),
        "started_at": DateTimeField(),
        "duration_ms": IntegerField(),
        "status_code": IntegerField(null=True),
        "error": TextField(null=True),
        "response": TextField(null=True),
        "outcome": CharField(max_length=16),
        "next_retry_at": DateTimeField(null=True),
    })
    db.create_tables([hook, delivery, attempt])
