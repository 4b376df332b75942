"""Webhook tables: the hooks, their deliveries (each the record of a job), and every attempt made."""

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
from app.core.jobs import CANCELLED, FAILED, PENDING, SUCCEEDED
from app.core.models import Job

# A delivery's status is its job's state; an attempt that will be tried again is "retrying".
STATUSES = (PENDING, SUCCEEDED, FAILED, CANCELLED)
RETRYING = "retrying"
ATTEMPT_OUTCOMES = (SUCCEEDED, RETRYING, FAILED)


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
    """One event for one hook: the domain record of a delivery job. Its id is the ``webhook-id`` header.

    The job (``app.core.jobs``) holds the scheduling state: status, attempts,
    the next attempt and the claim. Deleting the job deletes the delivery.
    """

    id = CharField(primary_key=True, max_length=40)
    job = ForeignKeyField(Job, on_delete="CASCADE", unique=True)
    hook = ForeignKeyField(Hook, on_delete="CASCADE", index=False)  # led by the composite index
    event = CharField(max_length=100)
    body = TextField()  # the exact JSON sent, identical on every attempt
    created_at = DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("hook", "created_at"), False),)  # a hook's deliveries, newest first

    # The operator's view of the delivery, read from its job (select it joined).
    @property
    def status(self) -> str:
        return self.job.state

    @property
    def next_attempt_at(self):
        return self.job.next_run_at if self.job.state == PENDING else None

    @property
    def completed_at(self):
        return self.job.finished_at

    @property
    def attempt_count(self) -> int:
        return self.job.attempts


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
