"""Sending deliveries: the ``hooks.deliver`` job kind, run by each worker's job pool.

Each claimed delivery is sent in its own greenlet (a thread outside gevent),
so a slow receiver holds one slot and nothing else. Nothing touches the
network inside a database transaction: claiming, sending and recording are
separate steps.

A claim lasts the attempt's timeout plus ``CLAIM_MARGIN_SECS``, and an
attempt never runs past its claim (minus ``CLAIM_SAFETY_SECS``), so a claim
can only lapse once its sender has stopped sending; the pool renews it on top.
"""

from __future__ import annotations

import functools
import logging
import time
from datetime import timedelta

from app.core import jobs
from app.core.db import utcnow
from app.core.leases import run_singleton
from app.core.timeparse import parse_duration
from app.hooks import outbox, signing, targets
from app.hooks.models import SUCCEEDED

log = logging.getLogger("hooks::delivery")

CLAIM_MARGIN_SECS = 5.0  # time to record a result after the attempt's timeout
CLAIM_SAFETY_SECS = 1.0  # kept between the end of an attempt and the claim's expiry
MIN_ATTEMPT_SECS = 0.05
RETENTION_INTERVAL_SECS = 300.0
RETRYABLE_STATUSES = {408, 429}


def parse_schedule(entries: list[str]) -> list[float]:
    """Seconds of each ``[hooks] retry_schedule`` entry (validated when the config loads)."""
    return list(_seconds(tuple(entries)))


@functools.lru_cache(maxsize=16)
def _seconds(entries: tuple[str, ...]) -> tuple[float, ...]:
    # Read at every poll (the setting is hot): parsed once per distinct value.
    return tuple(parse_duration(entry).total_seconds() for entry in entries)


def limits(state) -> jobs.Limits:
    settings = state.settings
    return jobs.Limits(
        claim_secs=settings.get("hooks.timeout_secs") + CLAIM_MARGIN_SECS,
        schedule=_seconds(tuple(settings.get("hooks.retry_schedule"))),
        concurrency=settings.get("hooks.max_concurrency"),
        per_partition=settings.get("hooks.max_in_flight_per_hook"),
        poll_secs=settings.get("hooks.poll_interval_secs"),
    )


def classify(status: int) -> str:
    if 200 <= status < 300:
        return SUCCEEDED
    if status in RETRYABLE_STATUSES or status >= 500:
        return jobs.RETRY
    return jobs.FAILED  # other 4xx, and redirects, which are not followed


def attempt(claim: jobs.Claim, settings, user_agent: str) -> jobs.Outcome | None:
    """Send one claimed delivery; None when its claim is too close to expiry to start."""
    started_at, t0 = utcnow(), time.monotonic()
    budget = min(settings.get("hooks.timeout_secs"), claim.remaining() - CLAIM_SAFETY_SECS)
    if budget < MIN_ATTEMPT_SECS:
        return None
    send: outbox.Send | None = claim.data
    if send is None:
        return jobs.Outcome(jobs.FAILED, error="the delivery no longer exists")

    def outcome(result: str, status_code: int | None = None, response: str | None = None, **fields):
        duration_ms = int((time.monotonic() - t0) * 1000)
        return jobs.Outcome(result, detail=outbox.Attempt(started_at, duration_ms, status_code, response), **fields)

    try:
        target = targets.parse(send.url)
        addresses = targets.allowed_addresses(target, settings.get("hooks.allow_private_targets"))
        timestamp = int(time.time())  # of this attempt: receivers reject stale timestamps
        headers = {
            "Content-Type": "application/json",
            "User-Agent": user_agent,
            "Connection": "close",
            **signing.headers(send.secret, send.delivery_id, timestamp, send.body),
        }
        remaining = budget - (time.monotonic() - t0)
        if remaining < MIN_ATTEMPT_SECS:
            raise targets.TransportError(f"timed out after {budget:.3g}s")
        response = targets.post(target, addresses, headers, send.body.encode(), remaining)
    except (ValueError, targets.TargetRefused) as exc:
        return outcome(jobs.FAILED, error=f"target refused: {exc}")
    except targets.TransportError as exc:
        return outcome(jobs.RETRY, error=str(exc))
    result = classify(response.status)
    error = None if result == SUCCEEDED else f"receiver answered HTTP {response.status}"
    return outcome(result, response.status, response.excerpt or None, error=error, retry_after=response.retry_after)


def _send(claim: jobs.Claim, state) -> jobs.Outcome | None:
    return attempt(claim, state.settings, f"Lockgate-Webhooks/{state.version}")


def _recorded(claim: jobs.Claim, outcome: jobs.Outcome, state) -> None:
    outbox.save_attempt(claim, outcome)
    what = f"delivery {claim.payload['delivery']} to hook {claim.partition}, attempt {claim.attempt}"
    if outcome.result == SUCCEEDED:
        log.debug("%s: HTTP %s in %d ms", what, outcome.detail.status_code, outcome.detail.duration_ms)
    elif claim.state == jobs.PENDING:
        log.info("%s failed: %s; will retry", what, outcome.error)
    else:
        log.warning("%s failed: %s; giving up (%s)", what, outcome.error, claim.state)


def _failed(claim: jobs.Claim, outcome: jobs.Outcome, state) -> bool:
    if outcome.detail is None:
        return True  # nothing was sent (the sender broke first): not the receiver's failure
    return outbox.count_failure(claim, state.settings.get("hooks.disable_after_failures"))


KIND = jobs.Kind(
    name=outbox.KIND,
    handler=_send,
    limits=limits,
    prepare=lambda claims, state: outbox.prepare(claims),
    on_attempt=_recorded,
    on_success=lambda claim, outcome, state: outbox.end_failure_run(claim),
    on_failure=_failed,
)


def sweep_once(settings) -> None:
    days = settings.get("hooks.retention_days")
    if days > 0:
        removed = outbox.sweep(utcnow() - timedelta(days=days))
        if removed:
            log.debug("retention removed %d finished deliveries", removed)


def start(state) -> None:
    """The (singleton) retention sweep; deliveries run in the worker's job pool (the area declares KIND)."""
    run_singleton("hooks-retention", lambda: RETENTION_INTERVAL_SECS, lambda: sweep_once(state.settings))
