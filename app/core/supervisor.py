"""The supervisor: named long-running units, kept running, restartable from any worker.

A unit is a name and a function ``run(ctx)`` that works until ``ctx.stopping``
(or ``ctx.wait(seconds)`` returns True). A singleton unit runs in one worker
of the whole deployment: every worker's supervisor tries to take the lease
``unit:<name>``, runs the unit only while it holds it, and stops it as soon
as the lease is lost; when the holder dies its lease expires and another
worker takes over. A unit that raises (or returns unasked) is run again after
an exponential, capped, backoff.

Units are declared in the module-level registry (``declare``; ``every`` turns
a periodic step into a unit) and started by ``start()`` once per served
worker. ``request(action, name)`` reaches every worker through the event bus;
the worker running the unit acts on it. What each unit is doing is kept in
the ``unit_state`` table (``states()``), so any worker can report it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.core import background, events
from app.core.db import connection, utcnow
from app.core.errors import BadRequest, NotFound
from app.core.leases import HeldLease, owner_id
from app.core.models import UnitState

log = logging.getLogger("core::supervisor")

STARTING, RUNNING, BACKOFF, ERROR, STOPPED = "starting", "running", "backoff", "error", "stopped"
ACTIONS = ("start", "stop", "restart")
TOPIC_PREFIX = "unit."
SINGLETON_TTL = 10.0
BACKOFF = (1.0, 60.0)  # first delay after a crash, and the cap
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Unit:
    name: str
    run: Callable[[UnitContext], None]
    singleton: bool = False
    ttl: float = SINGLETON_TTL
    backoff: tuple[float, float] = BACKOFF

    @property
    def lease_name(self) -> str:
        return f"unit:{self.name}"


class UnitContext:
    """What a running unit sees: its stop signal, its lease (singletons), and a way to say it is serving."""

    def __init__(self, runner: _Runner, lease: HeldLease | None):
        self.name = runner.unit.name
        self.lease = lease
        self._runner = runner
        self._stop = threading.Event()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as the unit is asked to stop."""
        return self._stop.wait(max(seconds, 0))

    def ready(self) -> None:
        """The unit is serving (a channel once connected): its state becomes running."""
        self._runner.record(RUNNING)

    def confirm(self) -> bool:
        """Inside a transaction: does this worker still hold the unit? Always True for non-singletons."""
        return self.lease is None or self.lease.confirm()

    def stop(self) -> None:
        self._stop.set()


def every(interval, step):
    """A unit's run function that calls ``step()`` (with a connection) every ``interval()`` seconds.

    An exception from ``step`` is a crash of the unit: recorded, then retried after the backoff.
    """

    def run(ctx: UnitContext) -> None:
        ctx.ready()
        while not ctx.stopping:
            with connection():
                step()
            if ctx.wait(interval()):
                return

    return run


class _Runner:
    """One unit in one worker: takes its lease, runs it, restarts it, records its state."""

    def __init__(self, unit: Unit, owner: str):
        self.unit = unit
        self.owner = owner
        self._guard = threading.Lock()
        self._wake = threading.Event()
        self._wanted = False
        self._restart = False
        self._ctx: UnitContext | None = None
        self._task: background.Task | None = None

    @property
    def row_id(self) -> str:
        return self.unit.name if self.unit.singleton else f"{self.unit.name}@{self.owner}"

    # Commands: any thread.

    def start(self) -> None:
        with self._guard:
            self._wanted = True
            if self._task is not None and self._task.is_alive():
                return
            self._task = background.spawn(f"unit-{self.unit.name}", self._keep)

    def stop(self, timeout: float | None = STOP_TIMEOUT) -> bool:
        """Stop the unit here (and give up its lease); waits up to ``timeout`` unless it is None."""
        with self._guard:
            self._wanted = False
            task = self._task
        self._signal()
        if task is None or timeout is None:
            return True
        return task.join(timeout)

    def restart(self) -> bool:
        """Run the unit again from the start, at once; False when it is not running in this worker."""
        with self._guard:
            if self._ctx is None:
                return False
            self._restart = True
        self._signal()
        return True

    def replace(self, unit: Unit) -> None:
        with self._guard:
            self.unit = unit
        self.restart()

    @property
    def active(self) -> bool:
        """Running here (or in backoff between runs), as opposed to waiting for the lease or stopped."""
        return self._ctx is not None

    def _signal(self) -> None:
        with self._guard:
            ctx = self._ctx
        if ctx is not None:
            ctx.stop()
        self._wake.set()

    # The keeper: the unit's own greenlet.

    def _keep(self, task: background.Task) -> None:
        stopped_cleanly = False
        try:
            while self._should_run(task):
                lease = self._take_lease()
                if lease is False:
                    continue
                self._serve(task, lease)
            stopped_cleanly = True
        finally:
            with self._guard:
                self._ctx = None
            if stopped_cleanly:
                self.record(STOPPED)
            self._start_again_if_asked(task)

    def _start_again_if_asked(self, task: background.Task) -> None:
        # A start that came while this keeper was finishing found it still alive and left it to us.
        with self._guard:
            if self._wanted and not task.stopping and self._task is task:
                self._task = background.spawn(f"unit-{self.unit.name}", self._keep)

    def _should_run(self, task: background.Task) -> bool:
        return self._wanted and not task.stopping

    def _pause(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _take_lease(self):
        """The unit's held lease, None for a unit that runs in every worker, False when not taken yet."""
        if not self.unit.singleton:
            return None
        lease = HeldLease(self.unit.lease_name, self.unit.ttl, on_lost=self._signal, owner=self.owner)
        try:
            if lease.acquire():
                return lease
        except Exception:
            log.warning("unit %s: could not try its lease", self.unit.name, exc_info=True)
        self._pause(self.unit.ttl / 3)
        return False

    def _serve(self, task: background.Task, lease: HeldLease | None) -> None:
        """Run the unit, again after each crash or restart, while this worker may."""
        failures, restarted = 0, False
        try:
            while self._should_run(task) and (lease is None or lease.held):
                ctx = self._begin(lease, restarted)
                started = time.monotonic()
                error = self._run(ctx)
                if self._take_restart():
                    failures, restarted = 0, True
                    continue
                if not self._should_run(task) or (lease is not None and not lease.held):
                    return
                if time.monotonic() - started >= self.unit.backoff[1]:
                    failures = 0  # it ran well for a while: a fresh failure starts the backoff over
                failures += 1
                self._back_off(error or "returned without being asked to stop", failures)
                restarted = True
                self._take_restart()
        finally:
            with self._guard:
                self._ctx = None
            if lease is not None:
                lease.release()

    def _begin(self, lease: HeldLease | None, restarted: bool) -> UnitContext:
        ctx = UnitContext(self, lease)
        with self._guard:
            self._ctx = ctx
        self._wake.clear()
        if not self._wanted or (lease is not None and not lease.held):
            ctx.stop()  # a stop or loss that came before this context existed
        self.record(STARTING, restarted=restarted, took_over=not restarted)
        return ctx

    def _run(self, ctx: UnitContext) -> str | None:
        try:
            self.unit.run(ctx)
        except Exception as exc:
            log.exception("unit %s crashed", self.unit.name)
            return f"{type(exc).__name__}: {exc}"
        return None

    def _take_restart(self) -> bool:
        with self._guard:
            asked, self._restart = self._restart, False
        return asked

    def _back_off(self, error: str, failures: int) -> None:
        first, cap = self.unit.backoff
        delay = min(first * 2 ** (failures - 1), cap)
        self.record(ERROR if delay >= cap else BACKOFF, error=error)
        log.warning("unit %s: restarting in %.1fs after: %s", self.unit.name, delay, error)
        self._pause(delay)

    # Shared state.

    def record(self, state: str, error: str | None = None, restarted: bool = False, took_over: bool = False):
        """Write the unit's state row; a worker that no longer owns the row writes nothing."""
        try:
            with connection():
                if took_over:
                    self._claim_row(state)
                else:
                    self._update_row(state, error, restarted)
        except Exception:
            log.warning("unit %s: could not record state %s", self.unit.name, state, exc_info=True)

    def _claim_row(self, state: str) -> None:
        now = utcnow()
        (
            UnitState.insert(id=self.row_id, name=self.unit.name, owner=self.owner, state=state, since=now)
            .on_conflict(conflict_target=[UnitState.id],
                         update={UnitState.owner: self.owner, UnitState.state: state, UnitState.since: now})
            .execute()
        )

    def _update_row(self, state: str, error: str | None, restarted: bool) -> None:
        changes = {UnitState.state: state, UnitState.since: utcnow()}
        if error is not None:
            changes[UnitState.last_error] = error[:2000]
        if restarted:
            changes[UnitState.restarts] = UnitState.restarts + 1
        UnitState.update(changes).where((UnitState.id == self.row_id) & (UnitState.owner == self.owner)).execute()


class Supervisor:
    """The units of one worker. ``owner`` defaults to the worker's lease owner id."""

    def __init__(self, owner: str | None = None):
        self.owner = owner
        self.units: dict[str, Unit] = {}
        self._runners: dict[str, _Runner] = {}
        self._guard = threading.Lock()
        self._started = False
        self._unsubscribe = None

    def declare(self, name: str, run, *, singleton: bool = False, ttl: float | None = None,
                backoff: tuple[float, float] = BACKOFF) -> Unit:
        """Add a unit; it starts with the supervisor, or now when the supervisor has started.

        Declaring a name again replaces the unit, which restarts if it was running here.
        """
        unit = Unit(name, run, singleton, ttl or SINGLETON_TTL, backoff)
        with self._guard:
            self.units[name] = unit
            runner = self._runners.get(name)
            started = self._started
        if runner is not None:
            runner.replace(unit)
        elif started:
            self.start_unit(name)
        return unit

    def start(self, listen: bool = True) -> None:
        """Start every declared unit; idempotent. ``listen`` follows commands published on the bus."""
        with self._guard:
            if self._started:
                return
            self._started = True
            names = list(self.units)
        if listen:
            self._unsubscribe = events.subscribe(TOPIC_PREFIX, self._on_command)
        background.on_stop(self.stop)
        for name in names:
            self.start_unit(name)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop every unit of this worker and release their leases."""
        with self._guard:
            self._started = False
            runners = list(self._runners.values())
            unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        for runner in runners:
            runner.stop(timeout=None)
        deadline = time.monotonic() + timeout
        for runner in runners:
            runner.stop(timeout=max(deadline - time.monotonic(), 0))

    def start_unit(self, name: str) -> None:
        self._runner(name).start()

    def stop_unit(self, name: str, timeout: float | None = STOP_TIMEOUT) -> bool:
        return self._runner(name).stop(timeout)

    def restart_unit(self, name: str) -> bool:
        """Restart the unit if it runs in this worker; False otherwise."""
        return self._runner(name).restart()

    def running_here(self, name: str) -> bool:
        return self._runner(name).active

    def request(self, action: str, name: str) -> None:
        """Ask every worker to ``start``, ``stop`` or ``restart`` unit ``name`` (through the event bus)."""
        if action not in ACTIONS:
            raise BadRequest(f"Unknown unit action {action!r}", details={"allowed": list(ACTIONS)})
        self._unit(name)
        events.publish(f"{TOPIC_PREFIX}{action}", {"name": name})

    def _on_command(self, topic: str, payload: dict) -> None:
        action, name = topic[len(TOPIC_PREFIX):], payload.get("name")
        if action not in ACTIONS or name not in self.units:
            return  # another version's unit, or not a command
        if action == "start":
            self.start_unit(name)
        elif action == "stop":
            self.stop_unit(name, timeout=None)  # the bus loop must not wait for the unit
        else:
            self.restart_unit(name)

    def _unit(self, name: str) -> Unit:
        unit = self.units.get(name)
        if unit is None:
            raise NotFound(f"No unit named {name!r}", details={"units": sorted(self.units)})
        return unit

    def _runner(self, name: str) -> _Runner:
        unit = self._unit(name)
        with self._guard:
            runner = self._runners.get(name)
            if runner is None:
                runner = self._runners[name] = _Runner(unit, self.owner or owner_id())
            return runner


def states() -> list[dict]:
    """Every unit's recorded state, as any worker reads it."""
    with connection():
        rows = list(UnitState.select().order_by(UnitState.name, UnitState.owner))
    return [
        {"name": row.name, "owner": row.owner, "state": row.state, "since": row.since,
         "last_error": row.last_error, "restarts": row.restarts}
        for row in rows
    ]


supervisor = Supervisor()
declare = supervisor.declare
request = supervisor.request
start_unit = supervisor.start_unit
stop_unit = supervisor.stop_unit
restart_unit = supervisor.restart_unit


def start(state=None) -> None:
    """Start this worker's units; called once per served worker (``state`` is the worker's Lockgate)."""
    supervisor.start()


def stop() -> None:
    supervisor.stop()
