"""Webhook tables: the hooks, their outbox of deliveries, and every attempt made."""

from __future__ import annotations

import json

from peewee import (
    AutoField,
    BooleanField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from app.core.db import BaseModel, utcnow

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"


class Hook(BaseModel):
    id = CharField(primary_key=True, max_length=40)
    url = CharField(max_length=2048)
    events = TextField()  # JSON list of topics, or ["*"]
    secret = CharField(max_length=200)  # needed in clear to sign; never returned after creation
    active = BooleanField(default=True, index=True)
    consecutive_failures = IntegerField(default=0)
    disabled_reason = CharField(max_length=300, null=True)
    created_at = DateTimeField(default=utcnow)
    updated_at = DateTimeField(default=utcnow)

    @property
    def event_list(self) -> list[str]:
        return json.loads(self.events)


class HookDelivery(BaseModel):
    """One event for one hook: the outbox row. Its id is the ``webhook-id`` header."""

    id = CharField(primary_key=True, max_length=40)
    hook = ForeignKeyField(Hook, on_delete="CASCADE", index=False)  # led by the composite index
    event = CharField(max_length=100)
    body = TextField()  # the exact JSON sent, identical on every attempt
    status = CharField(max_length=16, default=PENDING)
    next_attempt_at = DateTimeField(null=True)
    failures = IntegerField(default=0)  # failed attempts since the last manual retry
    attempt_count = IntegerField(default=0)
    claim_token = CharField(max_length=32, null=True)
    claimed_by = CharField(max_length=200, null=True)
    claimed_until = DateTimeField(null=True, index=True)
    created_at = DateTimeField(default=utcnow)
    completed_at = DateTimeField(null=True, index=True)

    class Meta:
        # No index leads with status: "pending" matches most rows, and such an
        # index would tempt the planner away from the primary key in claims.
        indexes = (
            (("hook", "status", "next_attempt_at"), False),  # a hook's due rows, oldest first
            (("hook", "created_at"), False),  # a hook's deliveries, newest first
        )


class HookAttempt(BaseModel):
    id = AutoField()
    delivery = ForeignKeyField(HookDelivery, on_delete="CASCADE", index=True)
    number = IntegerField()
    started_at = DateTimeField()
    duration_ms = IntegerField()
    status_code = IntegerField(null=True)
    error = TextField(null=True)
    response = TextField(null=True)  # the start of the receiver's answer
    outcome = CharField(max_length=16)  # succeeded | retrying | failed
    next_retry_at = DateTimeField(null=True)
