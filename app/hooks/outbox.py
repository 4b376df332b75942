"""The outbox: one row per (event, hook), written in the publishing transaction.

``enqueue`` is an in-transaction listener of the event bus, so an event's
deliveries are committed together with whatever caused the event, before the
API call that caused it returns.

Claiming gives a worker a time-limited right to send a row: a conditional
UPDATE that only succeeds while nobody else holds an unexpired claim
(SQLite admits one writer at a time; PostgreSQL first locks the candidates
with ``FOR UPDATE SKIP LOCKED`` so concurrent claimers pass over each other's
rows instead of waiting). A worker that dies simply lets its claims expire;
another worker claims the rows again: delivery is at least once. Claims last
longer than any attempt may take (see ``delivery``), so two workers never
send one row at the same time.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import secrets
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import fn

from app.core import events
from app.core.db import is_postgres, iso, transaction, utcnow
from app.hooks import catalogue
from app.hooks.models import FAILED, PENDING, SUCCEEDED, Hook, HookAttempt, HookDelivery
from app.hooks.views import hook_view

log = logging.getLogger("hooks::delivery")

CANCELLED = "cancelled"
RETRYING = "retrying"
JITTER = 0.2  # each retry waits its scheduled delay ±20%, so failed bursts do not return in lockstep
MAX_ERROR_CHARS = 1000


def new_delivery_id() -> str:
    # Not "msg_": session messages use that prefix, and both appear in one delivery.
    return f"dlv_{secrets.token_hex(12)}"


def webhook_body(topic: str, payload: dict, at: datetime) -> str:
    return json.dumps({"type": topic, "timestamp": iso(at), "data": payload},
                      default=str, separators=(",", ":"), ensure_ascii=False)


def _delivery_row(hook_id: str, topic: str, body: str, now: datetime) -> dict:
    return {
        "id": new_delivery_id(), "hook": hook_id, "event": topic, "body": body,
        "status": PENDING, "next_attempt_at": now, "created_at": now,
    }


def enqueue(topic: str, payload: dict) -> None:
    """Write a delivery for every active hook subscribed to ``topic`` (inside the caller's transaction)."""
    if topic not in catalogue.EVENTS:
        return
    hooks = [hook.id for hook in Hook.select(Hook.id, Hook.events).where(Hook.active == True)  # noqa: E712
             if catalogue.matches(hook.event_list, topic)]
    if not hooks:
        return
    now = utcnow()
    body = webhook_body(topic, payload, now)
    HookDelivery.insert_many([_delivery_row(hook_id, topic, body, now) for hook_id in hooks]).execute()


# Registered at import: every process that can publish builds the app, which imports this module.
events.on_publish(enqueue)


def enqueue_for(hook_id: str, topic: str, payload: dict) -> HookDelivery:
    """One delivery to one hook (the test ping), outside the bus."""
    now = utcnow()
    row = _delivery_row(hook_id, topic, webhook_body(topic, payload, now), now)
    HookDelivery.insert(row).execute()
    return HookDelivery.get_by_id(row["id"])


# ---- claiming ------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    delivery_id: str
    hook_id: str
    event: str
    body: str
    number: int  # this attempt's number, counting every earlier one
    failures: int  # failed attempts before this one, since the last manual retry
    url: str
    secret: str
    token: str
    claimed_until: datetime


def _due(now: datetime):
    return (
        (HookDelivery.status == PENDING)
        & (HookDelivery.next_attempt_at <= now)
        & (HookDelivery.claimed_until.is_null() | (HookDelivery.claimed_until < now))
    )


def has_due(now: datetime | None = None) -> bool:
    return Hook.select(Hook.id).where((Hook.active == True) & fn.EXISTS(_waiting(now or utcnow()))).exists()  # noqa: E712


def _waiting(now: datetime):
    """Due rows of the hook in the enclosing query (an index probe per hook)."""
    return HookDelivery.select(HookDelivery.id).where((HookDelivery.hook == Hook.id) & _due(now))


def in_flight_by_hook(now: datetime) -> dict[str, int]:
    # Only pending rows carry a claim (recording a result clears it), so the
    # claimed_until index finds them however long the backlog; they are few
    # (bounded by the workers' slots), so they are counted here, not by a
    # GROUP BY that could lead the planner to scan another index.
    claimed = HookDelivery.select(HookDelivery.hook).where(HookDelivery.claimed_until >= now).tuples()
    return dict(Counter(hook_id for (hook_id,) in claimed))


def _hooks_with_due_rows(now: datetime, exclude: list[str]) -> list[str]:
    query = Hook.select(Hook.id).where((Hook.active == True) & fn.EXISTS(_waiting(now)))  # noqa: E712
    if exclude:
        query = query.where(Hook.id.not_in(exclude))
    return [hook_id for (hook_id,) in query.tuples()]


def _candidates(now: datetime, limit: int, per_hook: int) -> list[str]:
    """Due rows to claim, taken from each hook in turn, at most ``per_hook`` in flight per hook.

    Serving hooks in turn, with a cap each, keeps one slow or backlogged
    receiver from taking every delivery slot. Each query is a short index
    range (hook, status, next_attempt_at), so the cost does not grow with a
    hook's backlog. The cap is checked before claiming, so two workers
    claiming at the same moment may briefly exceed it.
    """
    busy = in_flight_by_hook(now)
    hooks = _hooks_with_due_rows(now, [hook_id for hook_id, count in busy.items() if count >= per_hook])
    random.shuffle(hooks)  # no hook is always first in line
    queues = []
    for hook_id in hooks[:limit]:
        room = min(per_hook - busy.get(hook_id, 0), limit)
        rows = (HookDelivery.select(HookDelivery.id)
                .where((HookDelivery.hook == hook_id) & _due(now))
                .order_by(HookDelivery.next_attempt_at).limit(room).tuples())  # the index's own order
        queues.append([delivery_id for (delivery_id,) in rows])
    return [delivery_id for turn in itertools.zip_longest(*queues) for delivery_id in turn if delivery_id]


def _lock_first(ids: list[str], now: datetime, limit: int) -> list[str]:
    """The first ``limit`` candidates no concurrent claimer holds.

    SQLite has one writer at a time, and the claim's conditional UPDATE
    re-checks every row. PostgreSQL locks the rows, skipping those another
    worker is claiming right now, so that claimers never wait on each other.
    """
    if not is_postgres():
        return ids[:limit]
    locked = {row.id for row in HookDelivery.select(HookDelivery.id)
              .where(HookDelivery.id.in_(ids) & _due(now)).for_update(skip_locked=True)}
    return [delivery_id for delivery_id in ids if delivery_id in locked][:limit]


def claim(limit: int, per_hook: int, ttl: float, owner: str) -> list[Claim]:
    """Take up to ``limit`` due deliveries for ``ttl`` seconds; the rows no other worker now holds."""
    now = utcnow()
    if limit <= 0 or not has_due(now):
        return []  # the common idle case costs one read, no write lock
    ids = _candidates(now, limit, per_hook)  # read outside the write transaction: it stays short
    if not ids:
        return []
    token = uuid.uuid4().hex
    with transaction():
        ids = _lock_first(ids, now, limit)
        if not ids:
            return []
        # The conditions re-check each row: on SQLite another worker may have
        # claimed (or even finished) it since the candidates were read.
        (HookDelivery.update(claim_token=token, claimed_by=owner, claimed_until=now + timedelta(seconds=ttl))
         .where(HookDelivery.id.in_(ids) & _due(now)).execute())
        rows = list(HookDelivery.select(HookDelivery, Hook.id, Hook.url, Hook.secret).join(Hook)
                    .where(HookDelivery.id.in_(ids) & (HookDelivery.claim_token == token)))
    return [
        Claim(row.id, row.hook.id, row.event, row.body, row.attempt_count + 1, row.failures,
              row.hook.url, row.hook.secret, token, row.claimed_until)
        for row in rows
    ]


def release(claim_: Claim) -> None:
    """Give a claim back unused, so any worker may take the row at once."""
    (HookDelivery.update(claim_token=None, claimed_by=None, claimed_until=None)
     .where((HookDelivery.id == claim_.delivery_id) & (HookDelivery.claim_token == claim_.token)).execute())


# ---- results ----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    result: str  # succeeded | retry | failed
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    response: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Policy:
    schedule: list[float]  # seconds before each retry
    disable_after: int


def retry_delay(schedule: list[float], failures: int, retry_after: float | None) -> float | None:
    """Seconds until the next attempt after ``failures`` failed ones, or None when retries are spent."""
    if failures > len(schedule):
        return None
    delay = schedule[failures - 1] * random.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        # Honour the receiver's Retry-After, but never beyond the schedule's longest wait.
        delay = max(delay, min(retry_after, max(schedule)))
    return delay


def record(claim_: Claim, outcome: Outcome, policy: Policy) -> str:
    """Store an attempt and move the delivery on; returns the delivery's new status.

    A success, the common case, costs three statements; only a failure reads
    the hook, to count the failure and to learn whether it may still retry.
    """
    with transaction():
        now = utcnow()
        active, disabled = True, False
        if outcome.result == SUCCEEDED:
            Hook.update(consecutive_failures=0).where(
                (Hook.id == claim_.hook_id) & (Hook.consecutive_failures > 0)).execute()
        else:
            disabled = _count_failure(claim_.hook_id, policy, now)
            hook = Hook.get_or_none(Hook.id == claim_.hook_id)
            active = hook is not None and hook.active
        status, next_at, failures = _next_state(claim_, outcome, policy, active, now)
        fields = {
            HookDelivery.status: status,
            HookDelivery.next_attempt_at: next_at,
            HookDelivery.failures: failures,
            HookDelivery.attempt_count: HookDelivery.attempt_count + 1,
            HookDelivery.claim_token: None,
            HookDelivery.claimed_by: None,
            HookDelivery.claimed_until: None,
            HookDelivery.completed_at: None if status == PENDING else now,
        }
        # Only the claim holder moves the row: if the claim lapsed and another
        # worker took it, that worker's result is the one that counts.
        moved = (HookDelivery.update(fields)
                 .where((HookDelivery.id == claim_.delivery_id) & (HookDelivery.claim_token == claim_.token))
                 .execute())
        # The attempt happened even when the claim had lapsed; it is lost only
        # with its delivery (the hook was deleted, or retention removed it).
        if moved or HookDelivery.select().where(HookDelivery.id == claim_.delivery_id).exists():
            _save_attempt(claim_, outcome, status, next_at)
        if disabled:
            _announce_disabled(claim_.hook_id, now)
    return status


def _next_state(claim_: Claim, outcome: Outcome, policy: Policy, active: bool, now: datetime):
    if outcome.result == SUCCEEDED:
        return SUCCEEDED, None, claim_.failures
    failures = claim_.failures + 1
    if outcome.result == "retry" and active:
        delay = retry_delay(policy.schedule, failures, outcome.retry_after)
        if delay is not None:
            return PENDING, now + timedelta(seconds=delay), failures
    return FAILED, None, failures


def _save_attempt(claim_: Claim, outcome: Outcome, status: str, next_at: datetime | None) -> None:
    HookAttempt.create(
        delivery=claim_.delivery_id,
        number=claim_.number,
        started_at=outcome.started_at,
        duration_ms=outcome.duration_ms,
        status_code=outcome.status_code,
        error=outcome.error[:MAX_ERROR_CHARS] if outcome.error else None,
        response=outcome.response,
        outcome=RETRYING if status == PENDING else status,
        next_retry_at=next_at,
    )


def _count_failure(hook_id: str, policy: Policy, now: datetime) -> bool:
    """Lengthen the hook's run of failures; True when this failure deactivated the hook."""
    Hook.update(consecutive_failures=Hook.consecutive_failures + 1).where(Hook.id == hook_id).execute()
    reason = f"{policy.disable_after} consecutive failed deliveries"
    # The condition on ``active`` makes exactly one of several concurrent failures the one that disables.
    return bool(Hook.update(active=False, disabled_reason=reason, updated_at=now)
                .where((Hook.id == hook_id) & (Hook.active == True)  # noqa: E712
                       & (Hook.consecutive_failures >= policy.disable_after))
                .execute())


def _announce_disabled(hook_id: str, now: datetime) -> None:
    cancel_pending(hook_id, now)
    hook = Hook.get_by_id(hook_id)
    log.warning("hook %s (%s) disabled after %d consecutive failed deliveries",
                hook.id, hook.url, hook.consecutive_failures)
    events.publish("hook.disabled", hook_view(hook))


def cancel_pending(hook_id: str, now: datetime) -> int:
    """End a deactivated hook's waiting deliveries; a manual retry can still send them later.

    A delivery in flight keeps its claim and records its real result.
    """
    return (HookDelivery.update(status=CANCELLED, next_attempt_at=None, completed_at=now)
            .where((HookDelivery.hook == hook_id) & (HookDelivery.status == PENDING)
                   & (HookDelivery.claimed_until.is_null() | (HookDelivery.claimed_until < now)))
            .execute())


def sweep(before: datetime) -> int:
    """Delete finished deliveries (and their attempts) completed before ``before``."""
    finished = HookDelivery.select(HookDelivery.id).where(
        (HookDelivery.status != PENDING) & (HookDelivery.completed_at < before))
    HookAttempt.delete().where(HookAttempt.delivery.in_(finished)).execute()
    return HookDelivery.delete().where(
        (HookDelivery.status != PENDING) & (HookDelivery.completed_at < before)).execute()
