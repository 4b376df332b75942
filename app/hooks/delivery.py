"""Sending outbox rows: a per-worker dispatcher of greenlets, one per delivery.

Each worker polls the outbox, claims what its free slots allow and sends
every claimed row in its own greenlet (a thread outside gevent), so a slow
receiver holds one slot and nothing else. Nothing touches the network inside
a database transaction: claiming, sending and recording are separate steps.

A claim lasts the attempt's timeout plus ``CLAIM_MARGIN_SECS``, and an
attempt never runs past its claim (minus ``CLAIM_SAFETY_SECS``), so a
claim can only lapse once its sender has stopped sending.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from app.core.background import spawn_loop, stopping
from app.core.db import connection, utcnow
from app.core.leases import owner_id, run_singleton
from app.core.timeparse import parse_duration
from app.hooks import outbox, signing, targets
from app.hooks.models import SUCCEEDED

log = logging.getLogger("hooks::delivery")

CLAIM_MARGIN_SECS = 5.0  # time to record a result after the attempt's timeout
CLAIM_SAFETY_SECS = 1.0  # kept between the end of an attempt and the claim's expiry
MIN_ATTEMPT_SECS = 0.05
COALESCE_SECS = 0.005  # after a slot frees, wait this long for others before claiming
DB_SLOTS = 4  # senders recording at once per worker: bounded well below the connection pool
RETENTION_INTERVAL_SECS = 300.0
RETRYABLE_STATUSES = {408, 429}

def parse_schedule(entries: list[str]) -> list[float]:
    """Seconds of each ``[hooks] retry_schedule`` entry (validated when the config loads)."""
    return [parse_duration(entry).total_seconds() for entry in entries]


def policy(settings) -> outbox.Policy:
    return outbox.Policy(
        schedule=parse_schedule(settings.get("hooks.retry_schedule")),
        disable_after=settings.get("hooks.disable_after_failures"),
    )


def classify(status: int) -> str:
    if 200 <= status < 300:
        return SUCCEEDED
    if status in RETRYABLE_STATUSES or status >= 500:
        return "retry"
    return "failed"  # other 4xx, and redirects, which are not followed


def attempt(claim: outbox.Claim, settings, user_agent: str) -> outbox.Outcome | None:
    """Send one claimed delivery; None when its claim is too close to expiry to start."""
    started_at, t0 = utcnow(), time.monotonic()
    claim_left = (claim.claimed_until - started_at).total_seconds() - CLAIM_SAFETY_SECS
    budget = min(settings.get("hooks.timeout_secs"), claim_left)
    if budget < MIN_ATTEMPT_SECS:
        return None

    def outcome(result: str, **fields) -> outbox.Outcome:
        duration_ms = int((time.monotonic() - t0) * 1000)
        return outbox.Outcome(result, started_at, duration_ms, **fields)

    try:
        target = targets.parse(claim.url)
        addresses = targets.allowed_addresses(target, settings.get("hooks.allow_private_targets"))
        timestamp = int(time.time())  # of this attempt: receivers reject stale timestamps
        headers = {
            "Content-Type": "application/json",
            "User-Agent": user_agent,
            "Connection": "close",
            **signing.headers(claim.secret, claim.delivery_id, timestamp, claim.body),
        }
        remaining = budget - (time.monotonic() - t0)
        if remaining < MIN_ATTEMPT_SECS:
            raise targets.TransportError(f"timed out after {budget:.3g}s")
        response = targets.post(target, addresses, headers, claim.body.encode(), remaining)
    except (ValueError, targets.TargetRefused) as exc:
        return outcome("failed", error=f"target refused: {exc}")
    except targets.TransportError as exc:
        return outcome("retry", error=str(exc))
    result = classify(response.status)
    error = None if result == SUCCEEDED else f"receiver answered HTTP {response.status}"
    return outcome(result, status_code=response.status, error=error,
                   response=response.excerpt or None, retry_after=response.retry_after)


class Dispatcher:
    """Claims due deliveries for this worker and sends each in its own greenlet."""

    def __init__(self, state):
        self.state = state
        self.user_agent = f"Lockgate-Webhooks/{state.version}"
        self._lock = threading.Lock()
        self._senders: set[threading.Thread] = set()
        self._db_slots = threading.BoundedSemaphore(DB_SLOTS)
        self._slot_freed = threading.Event()

    @property
    def settings(self):
        return self.state.settings

    def in_flight(self) -> int:
        with self._lock:
            return len(self._senders)

    def poll(self) -> int:
        """Claim and start as many deliveries as free slots allow; how many started."""
        started = 0
        while not stopping():
            free = self.settings.get("hooks.max_concurrency") - self.in_flight()
            if free <= 0:
                break
            ttl = self.settings.get("hooks.timeout_secs") + CLAIM_MARGIN_SECS
            with connection():
                claims = outbox.claim(free, self.settings.get("hooks.max_in_flight_per_hook"), ttl, owner_id())
            for claim in claims:
                self._start(claim)
            started += len(claims)
            if len(claims) < free:
                break  # nothing more is due now
        return started

    def _start(self, claim: outbox.Claim) -> None:
        def run():
            try:
                self._send(claim)
            finally:
                with self._lock:
                    self._senders.discard(sender)
                # Rows may be waiting for this slot (or for this hook's share): claim again now.
                self._slot_freed.set()

        sender = threading.Thread(target=run, name=f"hook-{claim.delivery_id}", daemon=True)
        with self._lock:
            self._senders.add(sender)
        sender.start()

    def _send(self, claim: outbox.Claim) -> None:
        try:
            outcome = attempt(claim, self.settings, self.user_agent)
            with self._db_slots, connection():
                if outcome is None:
                    outbox.release(claim)
                    return
                status = outbox.record(claim, outcome, policy(self.settings))
            _log_result(claim, outcome, status)
        except Exception:
            # The claim lapses and another attempt follows: at least once, never lost.
            log.exception("delivery %s to hook %s could not be completed", claim.delivery_id, claim.hook_id)

    def wait(self, timeout: float | None = None) -> None:
        """Until every sender started so far has finished (tests and shutdown)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            senders = list(self._senders)
        for sender in senders:
            sender.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def step(self) -> None:
        """Poll, then sleep until the poll interval ends or a sender frees its slot."""
        self._slot_freed.clear()
        try:
            self.state.refresh_settings()  # a worker without requests still sees config edits
            self.poll()
        finally:
            # Also after an error (database unreachable...): the loop must not spin.
            if self._slot_freed.wait(self.settings.get("hooks.poll_interval_secs")):
                # Let senders finishing together free their slots, so one claim refills them all.
                time.sleep(COALESCE_SECS)


def _log_result(claim: outbox.Claim, outcome: outbox.Outcome, status: str) -> None:
    what = f"delivery {claim.delivery_id} ({claim.event}) to hook {claim.hook_id}, attempt {claim.number}"
    if outcome.result == SUCCEEDED:
        log.debug("%s: HTTP %s in %d ms", what, outcome.status_code, outcome.duration_ms)
    elif status == "pending":
        log.info("%s failed: %s; will retry", what, outcome.error)
    else:
        log.warning("%s failed: %s; giving up (%s)", what, outcome.error, status)


def sweep_once(settings) -> None:
    days = settings.get("hooks.retention_days")
    if days > 0:
        removed = outbox.sweep(utcnow() - timedelta(days=days))
        if removed:
            log.debug("retention removed %d finished deliveries", removed)


def start(state) -> Dispatcher:
    """The worker's delivery loop and the (singleton) retention sweep."""
    dispatcher = Dispatcher(state)
    spawn_loop("hooks-dispatch", lambda: 0, dispatcher.step)  # step() itself waits
    run_singleton("hooks-retention", lambda: RETENTION_INTERVAL_SECS, lambda: sweep_once(state.settings))
    return dispatcher
