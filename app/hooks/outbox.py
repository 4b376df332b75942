"""The outbox: one delivery job per (event, hook), written in the publishing transaction.

``enqueue`` is an in-transaction listener of the event bus, so an event's
deliveries are committed together with whatever caused the event, before the
API call that caused it returns. Each delivery is a durable job
(``app.core.jobs``) whose partition is its hook, so hooks share the delivery
slots fairly; the ``HookDelivery`` row is the job's domain record (event, the
exact body, the attempts made). The hook failure policy lives here as the
kind's callbacks: a success ends the hook's run of failures, a failure
lengthens it and may deactivate the hook, which announces ``hook.disabled``
and cancels the hook's waiting deliveries.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from app.core import events, jobs, jsonbody
from app.core.db import is_postgres, iso, utcnow
from app.core.models import Job
from app.hooks import catalogue
from app.hooks.models import PENDING, RETRYING, Hook, HookAttempt, HookDelivery
from app.hooks.views import hook_view

log = logging.getLogger("hooks::delivery")

KIND = "hooks.deliver"
MAX_ERROR_CHARS = 1000


def new_delivery_id() -> str:
    # Not "msg_": session messages use that prefix, and both appear in one delivery.
    return f"dlv_{secrets.token_hex(12)}"


def webhook_body(topic: str, payload: dict, at: datetime) -> str:
    return jsonbody.dumps({"type": topic, "timestamp": iso(at), "data": payload},
                          default=str, separators=(",", ":"), ensure_ascii=False)


def _queue(hook_ids: list[str], topic: str, body: str) -> list[str]:
    """One job and its delivery per hook, in the caller's transaction; the delivery ids."""
    now = utcnow()
    delivery_ids = [new_delivery_id() for _ in hook_ids]
    job_ids = jobs.enqueue_batch(KIND, [(hook_id, {"delivery": delivery_id})
                                        for hook_id, delivery_id in zip(hook_ids, delivery_ids, strict=True)])
    HookDelivery.insert_many([
        {"id": delivery_id, "job": job_id, "hook": hook_id, "event": topic, "body": body, "created_at": now}
        for delivery_id, job_id, hook_id in zip(delivery_ids, job_ids, hook_ids, strict=True)
    ]).execute()
    return delivery_ids


def enqueue(topic: str, payload: dict) -> None:
    """Queue a delivery for every active hook subscribed to ``topic`` (inside the caller's transaction)."""
    if topic not in catalogue.EVENTS:
        return
    hooks = [hook.id for hook in Hook.select(Hook.id, Hook.events).where(Hook.active == True)  # noqa: E712
             if catalogue.matches(hook.event_list, topic)]
    hooks = _kept(hooks)
    if hooks:
        _queue(hooks, topic, webhook_body(topic, payload, utcnow()))


def _kept(hook_ids: list[str]) -> list[str]:
    """Those of ``hook_ids`` that still exist, kept from deletion until the caller commits.

    On PostgreSQL a hook deleted by a concurrent transaction would otherwise fail the deliveries'
    foreign key, and with it the unrelated transaction that published the event. FOR KEY SHARE waits
    for a delete in progress and skips the hook it removed; it does not conflict with updates of the
    hook's other columns (its failure count).
    """
    if not hook_ids or not is_postgres():
        return hook_ids
    kept = {row.id for row in Hook.select(Hook.id).where(Hook.id.in_(hook_ids)).for_update("FOR KEY SHARE")}
    return [hook_id for hook_id in hook_ids if hook_id in kept]


def enqueue_for(hook_id: str, topic: str, payload: dict) -> HookDelivery:
    """One delivery to one hook (the test ping), outside the bus."""
    (delivery_id,) = _queue([hook_id], topic, webhook_body(topic, payload, utcnow()))
    return find(delivery_id)


def deliveries():
    """Deliveries selected with their jobs, which hold their status."""
    return HookDelivery.select(HookDelivery, Job).join(Job)


def find(delivery_id: str, hook_id: str | None = None) -> HookDelivery | None:
    query = deliveries().where(HookDelivery.id == delivery_id)
    if hook_id is not None:
        query = query.where(HookDelivery.hook == hook_id)
    return query.first()


def has_due(now: datetime | None = None) -> bool:
    return jobs.has_due(KIND, now)


def retry(delivery: HookDelivery) -> bool:
    """Queue a delivery again now with a fresh run of retries; False while it is being sent."""
    return jobs.requeue(delivery.job_id)


def cancel_pending(hook_id: str) -> int:
    """End a deactivated hook's waiting deliveries; a manual retry can still send them later."""
    return jobs.cancel(KIND, hook_id)


def forget(hook_id: str) -> int:
    """Drop a deleted hook's jobs (its deliveries and attempts go with them), sends in flight included."""
    return jobs.discard(KIND, hook_id)


def sweep(before: datetime) -> int:
    """Delete finished deliveries (with their jobs and attempts) completed before ``before``."""
    return jobs.sweep(KIND, before)


# ---- what a claimed job sends ------------------------------------------------------


@dataclass(frozen=True)
class Send:
    delivery_id: str
    hook_id: str
    event: str
    body: str
    url: str
    secret: str


def prepare(claims: list[jobs.Claim]) -> None:
    """Load what each claimed delivery sends (``claim.data``), for the whole batch in one query."""
    by_delivery = {claim.payload["delivery"]: claim for claim in claims}
    rows = (HookDelivery.select(HookDelivery.id, HookDelivery.event, HookDelivery.body, Hook.id, Hook.url,
                                Hook.secret)
            .join(Hook).where(HookDelivery.id.in_(list(by_delivery))))
    for row in rows:
        by_delivery[row.id].data = Send(row.id, row.hook.id, row.event, row.body, row.hook.url, row.hook.secret)


@dataclass(frozen=True)
class Attempt:
    """What one attempt did, as the delivery's attempt list shows it (an outcome's ``detail``)."""

    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    response: str | None = None


# ---- the hook failure policy: the kind's callbacks ---------------------------------


def save_attempt(claim: jobs.Claim, outcome: jobs.Outcome) -> None:
    attempt: Attempt | None = outcome.detail
    if attempt is None:
        return  # nothing was sent: the delivery no longer existed, or the sender broke before sending
    HookAttempt.create(
        delivery=claim.payload["delivery"],
        number=claim.attempt,
        started_at=attempt.started_at,
        duration_ms=attempt.duration_ms,
        status_code=attempt.status_code,
        error=outcome.error[:MAX_ERROR_CHARS] if outcome.error else None,
        response=attempt.response,
        outcome=RETRYING if claim.state == PENDING else claim.state,
        next_retry_at=claim.next_run_at,
    )


def end_failure_run(claim: jobs.Claim) -> None:
    Hook.update(consecutive_failures=0).where(
        (Hook.id == claim.partition) & (Hook.consecutive_failures > 0)).execute()


def count_failure(claim: jobs.Claim, disable_after: int) -> bool:
    """Lengthen the hook's run of failures; whether the hook is still active (and so may retry)."""
    hook_id, now = claim.partition, utcnow()
    Hook.update(consecutive_failures=Hook.consecutive_failures + 1).where(Hook.id == hook_id).execute()
    reason = f"{disable_after} consecutive failed deliveries"
    # The condition on ``active`` makes exactly one of several concurrent failures the one that disables.
    disabled = (Hook.update(active=False, disabled_reason=reason, updated_at=now)
                .where((Hook.id == hook_id) & (Hook.active == True)  # noqa: E712
                       & (Hook.consecutive_failures >= disable_after))
                .execute())
    hook = Hook.get_or_none(Hook.id == hook_id)
    if disabled:
        _announce_disabled(hook)
    return hook is not None and hook.active


def _announce_disabled(hook: Hook) -> None:
    cancel_pending(hook.id)
    log.warning("hook %s (%s) disabled after %d consecutive failed deliveries",
                hook.id, hook.url, hook.consecutive_failures)
    events.publish("hook.disabled", hook_view(hook))
