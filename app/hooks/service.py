"""Webhook registration and the operator's view of deliveries."""

from __future__ import annotations

import logging
import secrets

from app.core import jsonbody
from app.core.db import transaction, utcnow
from app.core.errors import BadRequest, Conflict, NotFound
from app.core.models import Job
from app.hooks import catalogue, outbox, signing, targets
from app.hooks.models import Hook, HookAttempt, HookDelivery
from app.hooks.schemas import DeliverySchema
from app.hooks.views import hook_view

_DELIVERY = DeliverySchema()

# A hook's whole life under one module: registration, changes, deliveries, disabling.
log = logging.getLogger("hooks::delivery")

PING_MESSAGE = "Test event from Lockgate: this hook is reachable and signatures verify."


def _find(hook_id: str) -> Hook:
    hook = Hook.get_or_none(Hook.id == hook_id)
    if hook is None:
        raise NotFound(f"No hook {hook_id!r}")
    return hook


def _normalise_events(names: list[str]) -> list[str]:
    if catalogue.WILDCARD in names:
        return [catalogue.WILDCARD]
    return list(dict.fromkeys(names))


def check_target(url: str, allow_private: bool) -> None:
    """Refuse URLs that resolve to non-public addresses (unless allowed); DNS happens here, outside any transaction."""
    if allow_private:
        return
    try:
        targets.allowed_addresses(targets.parse(url), allow_private=False)
    except targets.TargetRefused as exc:
        raise BadRequest("Webhook target refused", details={
            "url": [f"{exc}; set [hooks] allow_private_targets = true to allow it"]}) from None
    except (targets.TransportError, ValueError) as exc:
        raise BadRequest("Webhook target refused", details={"url": [str(exc)]}) from None


def list_hooks() -> list[dict]:
    return [hook_view(hook) for hook in Hook.select().order_by(Hook.created_at, Hook.id)]


def get_hook(hook_id: str) -> dict:
    return hook_view(_find(hook_id))


def create_hook(data: dict, allow_private: bool) -> dict:
    check_target(data["url"], allow_private)
    secret = data.get("secret")
    generated = secret is None
    if generated:
        secret = signing.generate_secret()
    now = utcnow()
    hook = Hook.create(
        id=f"hook_{secrets.token_hex(8)}",
        url=data["url"],
        events=jsonbody.dumps(_normalise_events(data["events"])),
        secret=secret,
        active=True,
        created_at=now,
        updated_at=now,
    )
    log.info("hook %s registered for %s", hook.id, hook.url)
    body = hook_view(hook)
    if generated:
        body["secret"] = secret  # the only time a secret leaves the server
    return body


def update_hook(hook_id: str, changes: dict, allow_private: bool) -> dict:
    if not changes:
        raise BadRequest("No changes given", details={"_schema": ["give url, events, active, secret or rotate_secret"]})
    if "url" in changes:
        check_target(changes["url"], allow_private)
    new_secret = signing.generate_secret() if changes.get("rotate_secret") else changes.get("secret")
    now = utcnow()
    with transaction():
        hook = _find(hook_id)
        was_active = hook.active
        written = {"updated_at": now}
        if "url" in changes:
            written["url"] = changes["url"]
        if "events" in changes:
            written["events"] = jsonbody.dumps(_normalise_events(changes["events"]))
        if new_secret:
            written["secret"] = new_secret
        if changes.get("active") is True and not was_active:
            written.update(active=True, consecutive_failures=0, disabled_reason=None)
        elif changes.get("active") is False and was_active:
            written["active"] = False
            outbox.cancel_pending(hook.id)
        # Only the columns asked for: a failed delivery's count (or the disable it led to), committed
        # since the read above, stays as it is.
        Hook.update(written).where(Hook.id == hook.id).execute()
        hook = _find(hook_id)
    log.info("hook %s updated: %s", hook_id, ", ".join(sorted(changes)))
    body = hook_view(hook)
    if changes.get("rotate_secret"):
        body["secret"] = new_secret
    return body


def delete_hook(hook_id: str) -> None:
    with transaction():
        _find(hook_id)
        outbox.forget(hook_id)
        Hook.delete().where(Hook.id == hook_id).execute()
    log.info("hook %s deleted", hook_id)


# ---- deliveries ---------------------------------------------------------------


def delivery_hook_view(delivery: HookDelivery, attempts: list[HookAttempt]) -> dict:
    delivery.attempts = sorted(attempts, key=lambda a: (a.number, a.id))
    return _DELIVERY.dump(delivery)


def _with_attempts(deliveries: list[HookDelivery]) -> list[dict]:
    by_delivery: dict[str, list] = {d.id: [] for d in deliveries}
    if deliveries:
        for attempt in HookAttempt.select().where(HookAttempt.delivery.in_(list(by_delivery))):
            by_delivery[attempt.delivery_id].append(attempt)
    return [delivery_hook_view(d, by_delivery[d.id]) for d in deliveries]


def list_deliveries(hook_id: str, status: str | None, event: str | None, limit: int) -> list[dict]:
    """Newest first, each with every attempt made."""
    _find(hook_id)
    query = outbox.deliveries().where(HookDelivery.hook == hook_id)
    if status:
        query = query.where(Job.state == status)
    if event:
        query = query.where(HookDelivery.event == event)
    deliveries = list(query.order_by(HookDelivery.created_at.desc()).limit(limit))
    return _with_attempts(deliveries)


def _delivery(delivery_id: str) -> dict:
    return _with_attempts([outbox.find(delivery_id)])[0]


def send_test(hook_id: str) -> dict:
    """Queue a ``ping`` to this hook alone; it goes out like any delivery."""
    with transaction():
        hook = _find(hook_id)
        if not hook.active:
            raise Conflict("The hook is inactive; set active to true first", details={"active": False})
        delivery = outbox.enqueue_for(hook.id, catalogue.PING, {"hook_id": hook.id, "message": PING_MESSAGE})
    return _delivery(delivery.id)


def retry_delivery(hook_id: str, delivery_id: str) -> dict:
    """Send a delivery again now, with the same webhook-id and body, and a fresh run of retries."""
    with transaction():
        hook = _find(hook_id)
        delivery = outbox.find(delivery_id, hook_id)
        if delivery is None:
            raise NotFound(f"No delivery {delivery_id!r} for hook {hook_id}")
        if not hook.active:
            raise Conflict("The hook is inactive; set active to true first", details={"active": False})
        if not outbox.retry(delivery):
            raise Conflict("The delivery is being sent right now", details={"status": delivery.status})
    log.info("delivery %s of hook %s queued again by request", delivery_id, hook_id)
    return _delivery(delivery.id)
