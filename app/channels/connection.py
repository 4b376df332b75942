"""A channel's connection as a supervised unit: connect, serve, and reconnect with backoff, in one worker.

Each configured channel is a singleton unit (``channel:<name>``) of the
supervisor, so exactly one worker holds its connection and another takes it
over when that worker dies. Inside the unit, a failed connection is retried
after an exponential wait with jitter, capped; after
``[channels] circuit_after_failures`` failures in a row the circuit breaker
opens and attempts come every ``circuit_open_secs`` until one succeeds. The
connector sees this module's ``Link``: how it says it is connected, that the
platform is alive, what round trip it measured, and which messages arrived.
"""

from __future__ import annotations

import logging
import random
import threading
import time

from app.channels import config as channel_config
from app.channels import dispatch, service
from app.channels.connectors import ChannelError, Inbound, connector_for
from app.channels.models import DISABLED, DISCONNECTED, RECONNECTING
from app.core import supervisor
from app.core.db import connection, transaction
from app.core.errors import NotFound

log = logging.getLogger("channel")

JITTER = 0.2
STOP_CHECK_SECS = 0.2
CONNECTED_WELL_SECS = 60.0  # a connection that lasted this long starts the backoff over
UNIT_TTL = 10.0


class Backoff:
    """Waits between connection attempts: doubling from ``first`` up to ``cap``, then the breaker's."""

    def __init__(self, first: float, cap: float, breaker_after: int, open_secs: float):
        self.first, self.cap, self.breaker_after, self.open_secs = first, cap, breaker_after, open_secs

    @classmethod
    def from_settings(cls, settings) -> Backoff:
        return cls(settings.get("channels.reconnect_first_secs"), settings.get("channels.reconnect_max_secs"),
                   settings.get("channels.circuit_after_failures"), settings.get("channels.circuit_open_secs"))

    def circuit_open(self, failures: int) -> bool:
        return failures >= self.breaker_after

    def delay(self, failures: int, asked: float | None = None) -> float:
        if self.circuit_open(failures):
            base = self.open_secs
        else:
            base = min(self.first * 2 ** (failures - 1), self.cap)
        if asked is not None:
            base = max(base, min(asked, self.cap))
        return base * random.uniform(1 - JITTER, 1 + JITTER)


def declare(state, name: str) -> None:
    supervisor.declare(service.unit_name(name), lambda ctx: Connection(state, name, ctx).run(),
                       singleton=True, ttl=UNIT_TTL)


def declare_missing(state, name: str) -> None:
    if service.unit_name(name) not in supervisor.supervisor.units:
        declare(state, name)


class Connection:
    """One run of a channel's unit; what its connector reports to."""

    def __init__(self, state, name: str, ctx):
        self.state = state
        self.name = name
        self.ctx = ctx
        self.owner = ctx.lease.owner if ctx.lease is not None else ""
        self.config: channel_config.ChannelConfig | None = None
        self.cursor: str | None = None
        self._connected_at: float | None = None
        self._last_activity_write = 0.0
        self._cadence: float | None = None

    # ---- the unit ----------------------------------------------------------------

    def run(self) -> None:
        settings = self.state.settings
        try:
            self.config = service.raise_for_config(self.name, service.channel_table(settings, self.name))
        except ChannelError as exc:
            self._hold(DISCONNECTED, exc.reason)
            return
        except NotFound:  # the table was removed: nothing to connect until it is configured again
            self._hold(DISABLED, "not configured")
            return
        if not self.config.enabled:
            self._hold(DISABLED, None)
            return
        self.ctx.ready()
        failures, first = 0, True
        connector = None
        while not self.ctx.stopping:
            service.record_attempt(self.name, self.owner, first)
            first = False
            self.cursor = service.cursor(self.name)
            self._connected_at = None
            try:
                connector = connector or connector_for(self.config)  # kept across reconnects: Discord resumes
                error = self._serve(connector)
            except ChannelError as exc:
                error = exc
            if self.ctx.stopping:
                break
            was_connected = self._connected_at is not None
            if was_connected and time.monotonic() - self._connected_at >= CONNECTED_WELL_SECS:
                failures = 0
            failures += 1
            self._back_off(Backoff.from_settings(self.state.settings), error, failures, was_connected)
        # Stopped for a restart, a configuration change or this worker's shutdown: a next run follows here or elsewhere.
        service.record_status(self.name, self.owner, RECONNECTING, None)

    def _hold(self, status: str, error: str | None) -> None:
        """A channel that cannot connect as configured: say so and wait for a change of configuration."""
        service.record_attempt(self.name, self.owner, True)
        service.record_status(self.name, self.owner, status, error)
        self.ctx.ready()
        while not self.ctx.wait(3600):
            pass

    def _back_off(self, backoff: Backoff, error: ChannelError, failures: int, was_connected: bool) -> None:
        delay = backoff.delay(failures, error.retry_after)
        words = error.reason
        if backoff.circuit_open(failures):
            words += f" (circuit open after {failures} failed attempts; next attempt in {delay:.1f}s)"
        status = DISCONNECTED if error.permanent or backoff.circuit_open(failures) else RECONNECTING
        service.record_failure(self.ctx, self.name, status, words, failures, was_connected)
        log_for(self.config).warning("channel %s: %s; reconnecting in %.1fs", self.name, words, delay)
        self.ctx.wait(delay)

    def _serve(self, connector) -> ChannelError:
        """Run the connector until it fails or the unit stops; the failure to report."""
        done = threading.Event()
        helpers = [threading.Thread(target=self._watch, args=(connector, done), daemon=True),
                   threading.Thread(target=self._measure, args=(connector, done), daemon=True)]
        for helper in helpers:
            helper.start()
        try:
            connector.serve(self)
            return ChannelError("the platform ended the connection")
        except ChannelError as exc:
            return exc
        except Exception as exc:
            if self.ctx.stopping:
                return ChannelError("stopped")
            log_for(self.config).exception("channel %s: connection failed", self.name)
            return ChannelError(f"{type(exc).__name__}: {exc}")
        finally:
            done.set()

    def _watch(self, connector, done: threading.Event) -> None:
        """Cut the connector's waits short as soon as the unit must stop (a restart, a lost lease, shutdown)."""
        while not done.wait(STOP_CHECK_SECS):
            if self.ctx.stopping:
                connector.abort()
                return

    def _measure(self, connector, done: threading.Event) -> None:
        """Measure the round trip to the platform periodically while connected (where the platform offers one)."""
        probe = getattr(connector, "probe", None)
        if probe is None:
            return
        while not done.wait(self.state.settings.get("channels.health_interval_secs")):
            if self._connected_at is None:
                continue
            try:
                self.latency(probe())
            except ChannelError as exc:
                log_for(self.config).info("channel %s: health probe failed: %s", self.name, exc.reason)

    # ---- the Link a connector reports to -------------------------------------------

    @property
    def stopping(self) -> bool:
        return self.ctx.stopping

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as the connection must stop."""
        return self.ctx.wait(seconds)

    def connected(self, cadence_secs: float | None) -> None:
        self._connected_at = time.monotonic()
        self._cadence = cadence_secs
        service.record_connected(self.ctx, self.name, cadence_secs)
        log_for(self.config).info("channel %s: connected", self.name)

    def activity(self) -> None:
        """The platform showed a sign of life (written at most every third of its cadence)."""
        now = time.monotonic()
        if now - self._last_activity_write >= min((self._cadence or 3.0) / 3, 5.0):
            self._last_activity_write = now
            service.record_activity(self.name, self.owner)

    def latency(self, milliseconds: float | None) -> None:
        if milliseconds is not None:
            service.record_latency(self.name, milliseconds, self.owner)

    def receive(self, messages: list[Inbound], cursor: str | None = None) -> bool:
        """Take messages in, and move the cursor past them, in one transaction; False once the lease is lost."""
        allowed = [message for message in messages if self._allowed(message)]
        with connection(), transaction():
            if not self.ctx.confirm():
                return False
            dispatch.accept(self.config, allowed, cursor)
        self.cursor = cursor
        return True

    def _allowed(self, message: Inbound) -> bool:
        if self.config.allows(message.user_id, message.username):
            return True
        log_for(self.config).info("channel %s: message from user %s (%s) ignored: not in allowed_users",
                                  self.name, message.user_id, message.username or "no username")
        return False


def log_for(config) -> logging.Logger:
    """The PRX-style module of a channel's log lines: ``channel::telegram``, ``channel::discord``..."""
    return logging.getLogger(f"channel::{config.type if config else 'unknown'}")
