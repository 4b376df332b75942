"""Durable jobs: work that must happen at least once, through worker crashes, with retries.

An area records a job in its own transaction (``enqueue``), so the work is
committed together with whatever asked for it; it keeps its own domain record
(a webhook delivery, an agent execution) pointing at the job. A ``Kind``
declares the handler, its limits and the callbacks where the area puts its
policy; every worker runs one ``Pool`` that claims due jobs of its kinds and
runs each in its own greenlet.

A claim is a time-limited right to run a job: a conditional UPDATE that only
succeeds while nobody holds an unexpired claim (SQLite admits one writer at a
time; PostgreSQL first locks the candidates with ``FOR UPDATE SKIP LOCKED``,
so concurrent claimers pass over each other's rows instead of waiting). The
pool renews its claims while their handlers work; a worker that dies stops
renewing, its claims expire and another worker takes the jobs. A result is
recorded only under the claim it was earned with, so a holder that lost its
claim never overwrites the work of the one that took it over.

Fairness: due jobs are taken from each partition (one hook, one agent, one
tool) in turn, at most ``per_partition`` in flight per partition across all
workers, so one backlogged partition cannot take every slot.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app.core import jsonbody
from app.core.background import spawn_loop, stopping
from app.core.db import connection, database, is_postgres, transaction, utcnow
from app.core.leases import owner_id
from app.core.models import Job

log = logging.getLogger("core::jobs")

PENDING, SUCCEEDED, FAILED, CANCELLED = "pending", "succeeded", "failed", "cancelled"
RETRY = "retry"  # an outcome, not a state: the job stays pending if its schedule allows
JITTER = 0.2  # each retry waits its scheduled delay ±20%, so failed bursts do not return in lockstep
RENEW_FRACTION = 2 / 3  # a claim is renewed once this much of its lifetime remains
COALESCE_SECS = 0.005  # after a slot frees, wait this long for others before claiming
DB_SLOTS = 4  # results recorded at once per worker: bounded well below the connection pool


class ClaimLost(Exception):
    """The claim expired and another worker may hold the job: this holder's result will not count."""


@dataclass(frozen=True)
class Limits:
    claim_secs: float  # how long a claim lasts unless renewed
    schedule: Sequence[float] = ()  # seconds before each retry; spent, the job fails
    concurrency: int = 8  # jobs of the kind running at once in one worker
    per_partition: int = 1_000_000  # in flight per partition, across all workers
    poll_secs: float = 0.25


@dataclass(frozen=True)
class Outcome:
    result: str  # SUCCEEDED | RETRY | FAILED
    error: str | None = None
    retry_after: float | None = None  # asked for by the other side; capped by the schedule
    detail: Any = None  # the kind's own account of the attempt, for its callbacks


def _no_callback(*_args) -> None:
    return None


@dataclass(frozen=True)
class Kind:
    """A kind of job. Every function gets the worker's state (``context``) as its last argument.

    ``handler(claim, context)`` runs outside any transaction and returns an
    ``Outcome``, or None to give the claim back unused. ``prepare(claims,
    context)`` may first load what the handlers need for a whole batch of
    claims in one query (into ``claim.data``). The callbacks run in
    the transaction that records an attempt, only while the claim is held:
    ``on_failure`` after each failed attempt, before the retry is decided
    (returning False ends the retries); ``on_attempt`` after every recorded
    attempt, with the claim showing the job's new state; ``on_success`` and
    ``on_gave_up`` when the job ends.
    """

    name: str
    handler: Callable[[Claim, Any], Outcome | None]
    limits: Callable[[Any], Limits]  # from the context, read at each poll: settings may change
    prepare: Callable[[list[Claim], Any], None] = _no_callback
    on_attempt: Callable[[Claim, Outcome, Any], None] = _no_callback
    on_success: Callable[[Claim, Outcome, Any], None] = _no_callback
    on_failure: Callable[[Claim, Outcome, Any], bool | None] = _no_callback
    on_gave_up: Callable[[Claim, Outcome, Any], None] = _no_callback


@dataclass
class Claim:
    """One claimed job, as its handler sees it."""

    kind: Kind
    job_id: str
    partition: str
    payload: dict
    attempt: int  # this attempt's number, counting every earlier one
    failures: int  # failed attempts before this one, since the job was last requeued
    token: str
    claim_secs: float
    expires_at: datetime
    lost: bool = False
    settled: bool = False  # its result is being recorded: renewing is over
    data: Any = None  # what the kind's ``prepare`` loaded for the handler
    # After the attempt is recorded: the job's new state and next run.
    state: str = PENDING
    next_run_at: datetime | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def remaining(self) -> float:
        """Seconds until the claim expires (negative once it has)."""
        return (self.expires_at - utcnow()).total_seconds()

    def renew(self) -> bool:
        """Extend the claim by its lifetime from now; False (and ``lost``) once it is no longer held."""
        with self._lock:
            if self.lost or self.settled:
                return not self.lost
            until = utcnow() + timedelta(seconds=self.claim_secs)
            with connection():
                held = (Job.update(claimed_until=until)
                        .where((Job.id == self.job_id) & (Job.claim_token == self.token)
                               & (Job.state == PENDING)).execute())
            if held:
                self.expires_at = until
            else:
                self.lost = True
            return bool(held)

    def check(self) -> None:
        """Raise ``ClaimLost`` when the claim is gone: a long handler calls this between steps."""
        if self.lost or self.remaining() <= 0:
            self.lost = True
            raise ClaimLost(f"job {self.job_id}: claim lost")


# ---- enqueueing ------------------------------------------------------------------


def new_job_id() -> str:
    return f"job_{secrets.token_hex(12)}"


def enqueue(kind: str, payload: dict, partition: str = "", run_at: datetime | None = None) -> str:
    """Record a job inside the caller's transaction; returns its id."""
    return enqueue_batch(kind, [(partition, payload)], run_at)[0]


def enqueue_batch(kind: str, items: Sequence[tuple[str, dict]], run_at: datetime | None = None) -> list[str]:
    """Record one job per (partition, payload) in one statement; returns their ids in order."""
    now = utcnow()
    rows = [{"id": new_job_id(), "kind": kind, "partition_key": partition, "state": PENDING,
             "payload": jsonbody.dumps(payload, separators=(",", ":")), "next_run_at": run_at or now,
             "created_at": now} for partition, payload in items]
    if rows:
        Job.insert_many(rows).execute()
    return [row["id"] for row in rows]


# ---- claiming ---------------------------------------------------------------------


def _unclaimed(now: datetime):
    return Job.claimed_until.is_null() | (Job.claimed_until < now)


def _due(now: datetime):
    return (Job.state == PENDING) & (Job.next_run_at <= now) & _unclaimed(now)


def has_due(kind: str, now: datetime | None = None) -> bool:
    return bool(due_partitions(kind, now or utcnow()))


def in_flight_by_partition(kind: str, now: datetime) -> dict[str, int]:
    # Only pending jobs carry a claim (recording a result clears it), so the
    # claimed_until index finds them however long the backlog; they are few
    # (bounded by the workers' slots), so they are counted here.
    claimed = Job.select(Job.partition_key, Job.kind).where(Job.claimed_until >= now).tuples()
    return dict(Counter(partition for partition, of_kind in claimed if of_kind == kind))


def _due_partitions_sql() -> str:
    # A skip scan of the (kind, state, partition_key, next_run_at) index finds
    # each partition with pending jobs in one seek; one more probe tells whether
    # it has a due one. The cost grows with the partitions, never with a backlog.
    # The first seek's ">= ''" (every key) keeps the planner on that index.
    p = database.obj.param
    next_partition = f"SELECT MIN(partition_key) FROM job WHERE kind = {p} AND state = '{PENDING}' AND partition_key"
    return ("WITH RECURSIVE pending_partition(candidate) AS ("
            f"SELECT ({next_partition} >= '') "
            "UNION ALL "
            f"SELECT ({next_partition} > pending_partition.candidate) "
            "FROM pending_partition WHERE pending_partition.candidate IS NOT NULL"
            ") SELECT candidate FROM pending_partition WHERE candidate IS NOT NULL AND EXISTS ("
            f"SELECT 1 FROM job WHERE kind = {p} AND state = '{PENDING}' AND partition_key = candidate "
            f"AND next_run_at <= {p} AND (claimed_until IS NULL OR claimed_until < {p}))")


def due_partitions(kind: str, now: datetime) -> list[str]:
    """The partitions of ``kind`` with a due job no one holds, in key order."""
    cursor = database.execute_sql(_due_partitions_sql(), (kind, kind, kind, now, now))
    return [key for (key,) in cursor.fetchall()]


def _candidates(kind: str, now: datetime, partitions: list[str], limit: int, per_partition: int) -> list[str]:
    """Due jobs to claim, taken from each partition in turn, at most ``per_partition`` in flight each.

    Each query is a short index range, so the cost does not grow with a
    partition's backlog. The cap is checked before claiming, so two workers
    claiming at the same moment may briefly exceed it.
    """
    busy = in_flight_by_partition(kind, now)
    partitions = [key for key in partitions if busy.get(key, 0) < per_partition]
    random.shuffle(partitions)  # no partition is always first in line
    queues = []
    for key in partitions[:limit]:
        room = min(per_partition - busy.get(key, 0), limit)
        rows = (Job.select(Job.id)
                .where((Job.kind == kind) & (Job.partition_key == key) & _due(now))
                .order_by(Job.next_run_at).limit(room).tuples())  # the index's own order
        queues.append([job_id for (job_id,) in rows])
    return [job_id for turn in itertools.zip_longest(*queues) for job_id in turn if job_id]


def _lock_first(ids: list[str], now: datetime, limit: int) -> list[str]:
    """The first ``limit`` candidates no concurrent claimer holds.

    SQLite has one writer at a time, and the claim's conditional UPDATE
    re-checks every row. PostgreSQL locks the rows, skipping those another
    worker is claiming right now, so that claimers never wait on each other.
    """
    if not is_postgres():
        return ids[:limit]
    locked = {row.id for row in Job.select(Job.id).where(Job.id.in_(ids) & _due(now)).for_update(skip_locked=True)}
    return [job_id for job_id in ids if job_id in locked][:limit]


def claim(kind: Kind, limit: int, per_partition: int, claim_secs: float, owner: str) -> list[Claim]:
    """Take up to ``limit`` due jobs of ``kind`` for ``claim_secs`` seconds: those no other worker now holds."""
    now = utcnow()
    partitions = due_partitions(kind.name, now) if limit > 0 else []
    if not partitions:
        return []  # the common idle case costs one read, no write lock
    # Read outside the write transaction, so that it stays short.
    ids = _candidates(kind.name, now, partitions, limit, per_partition)
    if not ids:
        return []
    token = uuid.uuid4().hex
    with transaction():
        ids = _lock_first(ids, now, limit)
        if not ids:
            return []
        # The conditions re-check each row: on SQLite another worker may have
        # claimed (or even finished) it since the candidates were read.
        (Job.update(claim_token=token, claimed_by=owner, claimed_until=now + timedelta(seconds=claim_secs))
         .where(Job.id.in_(ids) & _due(now)).execute())
        rows = list(Job.select().where(Job.id.in_(ids) & (Job.claim_token == token)))
    return [Claim(kind, row.id, row.partition_key, json.loads(row.payload), row.attempts + 1, row.failures,
                  token, claim_secs, row.claimed_until) for row in rows]


def release(claim_: Claim) -> None:
    """Give a claim back unused, so any worker may take the job at once."""
    (Job.update(claim_token=None, claimed_by=None, claimed_until=None)
     .where((Job.id == claim_.job_id) & (Job.claim_token == claim_.token)).execute())


# ---- results ----------------------------------------------------------------------


def retry_delay(schedule: Sequence[float], failures: int, retry_after: float | None) -> float | None:
    """Seconds until the next attempt after ``failures`` failed ones, or None when retries are spent."""
    if failures > len(schedule):
        return None
    delay = schedule[failures - 1] * random.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        # Honour the other side's wish, but never beyond the schedule's longest wait.
        delay = max(delay, min(retry_after, max(schedule)))
    return delay


def _held(claim_: Claim):
    return (Job.id == claim_.job_id) & (Job.claim_token == claim_.token)


_CLEARED = {Job.claim_token: None, Job.claimed_by: None, Job.claimed_until: None}


def record(claim_: Claim, outcome: Outcome, context=None) -> str | None:
    """Store an attempt's result and move the job on: its new state, or None when the claim was lost.

    A success, the common case, is one statement plus the kind's callbacks.
    """
    if claim_.lost:
        return None
    kind = claim_.kind
    with transaction():
        now = utcnow()
        if outcome.result == SUCCEEDED:
            moved = Job.update({**_CLEARED, Job.state: SUCCEEDED, Job.next_run_at: None, Job.finished_at: now,
                                Job.attempts: Job.attempts + 1}).where(_held(claim_)).execute()
            if not moved:
                claim_.lost = True
                return None
            claim_.state, claim_.next_run_at = SUCCEEDED, None
            kind.on_attempt(claim_, outcome, context)
            kind.on_success(claim_, outcome, context)
            return SUCCEEDED
        # The claim stays until the new state is written, so the kind's policy
        # (which may cancel the partition's waiting jobs) passes over this one.
        if not Job.update(attempts=Job.attempts + 1).where(_held(claim_)).execute():
            claim_.lost = True
            return None
        may_retry = kind.on_failure(claim_, outcome, context) is not False
        failures = claim_.failures + 1
        delay = None
        if outcome.result == RETRY and may_retry:
            delay = retry_delay(kind.limits(context).schedule, failures, outcome.retry_after)
        state = FAILED if delay is None else PENDING
        next_run_at = None if delay is None else now + timedelta(seconds=delay)
        Job.update({**_CLEARED, Job.state: state, Job.next_run_at: next_run_at, Job.failures: failures,
                    Job.finished_at: now if state == FAILED else None}).where(Job.id == claim_.job_id).execute()
        claim_.state, claim_.next_run_at = state, next_run_at
        kind.on_attempt(claim_, outcome, context)
        if state == FAILED:
            kind.on_gave_up(claim_, outcome, context)
        return state


# ---- managing jobs ----------------------------------------------------------------


def requeue(job_id: str) -> bool:
    """Run a job again now with a fresh run of retries; False while it is being run."""
    now = utcnow()
    return bool(Job.update(state=PENDING, next_run_at=now, failures=0, finished_at=None)
                .where((Job.id == job_id) & _unclaimed(now)).execute())


def cancel(kind: str, partition: str) -> int:
    """End a partition's waiting jobs; one being run keeps its claim and records its real result.

    On PostgreSQL a job another transaction holds at this moment (a worker claiming it) is left to that
    transaction, as one being run is: a cancel never waits on a job's row, so it cannot deadlock with a
    transaction that holds one and waits on a row the cancelling transaction holds (a hook's, say).
    """
    now = utcnow()
    waiting = (Job.kind == kind) & (Job.partition_key == partition) & (Job.state == PENDING) & _unclaimed(now)
    if is_postgres():
        waiting = Job.id.in_(Job.select(Job.id).where(waiting).for_update(skip_locked=True))
    return Job.update(state=CANCELLED, next_run_at=None, finished_at=now).where(waiting).execute()


def discard(kind: str, partition: str) -> int:
    """Delete a partition's jobs, running ones included (their results will not be recorded)."""
    return Job.delete().where((Job.kind == kind) & (Job.partition_key == partition)).execute()


def sweep(kind: str, before: datetime) -> int:
    """Delete finished jobs of ``kind`` (and, by cascade, their domain records) finished before ``before``."""
    return Job.delete().where((Job.kind == kind) & (Job.state != PENDING) & (Job.finished_at < before)).execute()


# ---- running ----------------------------------------------------------------------


class Pool:
    """Claims due jobs of its kinds for this worker and runs each in its own greenlet."""

    def __init__(self, context, kinds: Sequence[Kind] = ()):
        self.context = context
        self.kinds: list[Kind] = list(kinds)
        self._lock = threading.Lock()
        self._running: dict[threading.Thread, Claim] = {}
        self._db_slots = threading.BoundedSemaphore(DB_SLOTS)
        self._slot_freed = threading.Event()

    def add(self, kind: Kind) -> None:
        if all(known.name != kind.name for known in self.kinds):
            self.kinds.append(kind)

    def running(self, kind_name: str | None = None) -> list[Claim]:
        with self._lock:
            return [c for c in self._running.values() if kind_name is None or c.kind.name == kind_name]

    def poll(self, limits: dict[str, Limits] | None = None) -> int:
        """Claim and start as many jobs as free slots allow; how many started."""
        limits = limits or self.limits()
        return sum(self._poll_kind(kind, limits[kind.name]) for kind in list(self.kinds))

    def limits(self) -> dict[str, Limits]:
        return {kind.name: kind.limits(self.context) for kind in list(self.kinds)}

    def _poll_kind(self, kind: Kind, limits: Limits) -> int:
        started = 0
        while not stopping():
            free = limits.concurrency - len(self.running(kind.name))
            if free <= 0:
                break
            with connection():
                claims = claim(kind, free, limits.per_partition, limits.claim_secs, owner_id())
                if claims:
                    kind.prepare(claims, self.context)
            for claim_ in claims:
                self._start(claim_)
            started += len(claims)
            if len(claims) < free:
                break  # nothing more is due now
        return started

    def _start(self, claim_: Claim) -> None:
        def run():
            try:
                self._run(claim_)
            finally:
                with self._lock:
                    self._running.pop(runner, None)
                # Jobs may be waiting for this slot (or this partition's share): claim again now.
                self._slot_freed.set()

        runner = threading.Thread(target=run, name=f"job-{claim_.kind.name}-{claim_.job_id}", daemon=True)
        with self._lock:
            self._running[runner] = claim_
        runner.start()

    def _run(self, claim_: Claim) -> None:
        kind = claim_.kind
        try:
            outcome = kind.handler(claim_, self.context)
        except ClaimLost:
            return
        except Exception as exc:
            log.exception("job %s (%s) failed", claim_.job_id, kind.name)
            outcome = Outcome(RETRY, error=f"{type(exc).__name__}: {exc}")
        with claim_._lock:  # a renewal under way ends first; none starts after
            claim_.settled = True
        try:
            with self._db_slots, connection():
                if outcome is None:
                    release(claim_)
                elif record(claim_, outcome, self.context) is None:
                    log.warning("job %s (%s): claim lost before its result was recorded", claim_.job_id, kind.name)
        except Exception:
            # The claim lapses and another attempt follows: at least once, never lost.
            log.exception("job %s (%s): result could not be recorded", claim_.job_id, kind.name)

    def renew_due(self) -> int:
        """Renew every running claim past the first third of its lifetime; how many were renewed."""
        renewed = 0
        for claim_ in self.running():
            if not claim_.lost and claim_.remaining() < claim_.claim_secs * RENEW_FRACTION:
                if claim_.renew():
                    renewed += 1
                else:
                    log.warning("job %s (%s): claim lost while running", claim_.job_id, claim_.kind.name)
        return renewed

    def renew_interval(self) -> float:
        lifetimes = [c.claim_secs for c in self.running()] or [kind.limits(self.context).claim_secs
                                                                for kind in self.kinds] or [3.0]
        return min(1.0, max(0.02, min(lifetimes) / 6))

    def wait(self, timeout: float | None = None) -> None:
        """Until every job started so far has finished (tests and shutdown)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            runners = list(self._running)
        for runner in runners:
            runner.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def step(self) -> None:
        """Poll, then sleep until the shortest poll interval ends or a job frees its slot."""
        self._slot_freed.clear()
        interval = 0.25
        try:
            refresh = getattr(self.context, "refresh_settings", None)
            if refresh is not None:
                refresh()  # a worker without requests still sees config edits
            limits = self.limits()
            interval = min((each.poll_secs for each in limits.values()), default=interval)
            self.poll(limits)
        finally:
            # Also after an error (database unreachable...): the loop must not spin.
            if self._slot_freed.wait(interval):
                # Let jobs finishing together free their slots, so one claim refills them all.
                time.sleep(COALESCE_SECS)


_pool: Pool | None = None
_pool_lock = threading.Lock()


def start(context, kinds: Sequence[Kind]) -> Pool:
    """This worker's pool, started on first use; later calls add their kinds to it."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.context is not context:
            _pool = Pool(context)
            spawn_loop("jobs", lambda: 0, _pool.step)  # step() itself waits
            spawn_loop("jobs-renew", _pool.renew_interval, _pool.renew_due)
        for kind in kinds:
            _pool.add(kind)
        return _pool
