"""Durable jobs on a real database: claim races between processes, renewal, expiry after SIGKILL, retries, fairness."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from app.core import jobs
from app.core.db import connection, init_database, transaction, utcnow
from app.core.models import Job

ROOT = Path(__file__).resolve().parents[2]


def kind(name="test.work", handler=None, claim_secs=30.0, schedule=(1.0, 2.0), **callbacks) -> jobs.Kind:
    limits = jobs.Limits(claim_secs=claim_secs, schedule=schedule, concurrency=4, poll_secs=0.05)
    return jobs.Kind(name=name, handler=handler or (lambda claim, context: jobs.Outcome(jobs.SUCCEEDED)),
                     limits=lambda context: limits, **callbacks)


WORK = kind()


@pytest.fixture
def database(db_url):
    from app.core import migrate

    init_database(db_url)
    with connection():
        migrate.upgrade()
    return db_url


def queue(count: int, partition: str = "p", name: str = WORK.name) -> list[str]:
    with connection(), transaction():
        return jobs.enqueue_batch(name, [(partition, {"n": n}) for n in range(count)])


def claim(limit=100, per_partition=100, claim_secs=30.0, owner="test", of=WORK) -> list[jobs.Claim]:
    with connection():
        return jobs.claim(of, limit, per_partition, claim_secs, owner)


def job(job_id: str) -> Job:
    with connection():
        return Job.get_by_id(job_id)


def test_enqueue_commits_and_rolls_back_with_the_callers_transaction(database):
    with connection():
        with pytest.raises(RuntimeError):
            with transaction():
                jobs.enqueue(WORK.name, {"n": 1}, partition="a")
                raise RuntimeError("the caller's work failed")
        assert Job.select().count() == 0
        with transaction():
            job_id = jobs.enqueue(WORK.name, {"n": 2}, partition="a", run_at=utcnow() + timedelta(seconds=60))
    assert claim() == []  # not due yet
    row = job(job_id)
    assert (row.state, row.partition_key, json.loads(row.payload), row.attempts) == ("pending", "a", {"n": 2}, 0)


# ---- claim races between processes ----------------------------------------------------

CLAIMER = """
import json, sys, time
from app.core import jobs
from app.core.db import connection, init_database

url, owner, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
init_database(url)
kind = jobs.Kind("test.work", lambda c, x: None, lambda x: jobs.Limits(claim_secs=60.0))
claimed, idle_since = [], None
time.sleep(max(0.0, start_at - time.time()))
while True:
    with connection():
        got = jobs.claim(kind, 3, 1000, 60.0, owner)
    claimed += [c.job_id for c in got]
    if got:
        idle_since = None
    elif idle_since is None:
        idle_since = time.monotonic()
    elif time.monotonic() - idle_since > 0.5:
        break
print(json.dumps(claimed))
"""


def test_processes_claiming_at_once_never_claim_a_job_twice(database):
    queued = queue(30, "a") + queue(30, "b") + queue(30, "c")
    start_at = time.time() + 1.5  # every process is up and connected before the first claim
    claimers = [subprocess.Popen([sys.executable, "-c", CLAIMER, database, f"claimer-{n}", str(start_at)],
                                 cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for n in range(4)]
    results = []
    for claimer in claimers:
        out, err = claimer.communicate(timeout=60)
        assert claimer.returncode == 0, err
        results.append(json.loads(out))
    claimed = [job_id for result in results for job_id in result]
    assert len(claimed) == len(set(claimed)) == 90
    assert set(claimed) == set(queued)
    assert sum(1 for result in results if result) >= 2  # they really raced
    with connection():
        owners = {row.id: row.claimed_by for row in Job.select()}
    for number, result in enumerate(results):
        assert all(owners[job_id] == f"claimer-{number}" for job_id in result)


# ---- renewal and lost claims ------------------------------------------------------------


def test_a_renewed_claim_outlives_its_original_expiry(database):
    (job_id,) = queue(1)
    (held,) = claim(claim_secs=0.5)
    original_expiry = held.expires_at
    time.sleep(0.3)
    assert held.renew()
    assert held.expires_at > original_expiry
    time.sleep(0.35)  # past the original expiry
    assert utcnow() > original_expiry
    assert claim(owner="other") == []
    with connection():
        assert jobs.record(held, jobs.Outcome(jobs.SUCCEEDED)) == jobs.SUCCEEDED
    row = job(job_id)
    assert row.state == "succeeded" and row.attempts == 1 and row.claim_token is None


def test_a_lost_claim_is_detected_and_its_result_not_recorded(database):
    (job_id,) = queue(1)
    (first,) = claim(claim_secs=0.2, owner="stalled")
    time.sleep(0.3)
    (second,) = claim(owner="survivor")
    assert second.job_id == job_id and second.token != first.token
    assert first.renew() is False and first.lost
    with pytest.raises(jobs.ClaimLost):
        first.check()
    with connection():
        assert jobs.record(first, jobs.Outcome(jobs.SUCCEEDED)) is None
    row = job(job_id)
    assert row.state == "pending" and row.claim_token == second.token and row.attempts == 0
    with connection():
        assert jobs.record(second, jobs.Outcome(jobs.FAILED, error="no")) == jobs.FAILED
    assert job(job_id).state == "failed"


def test_the_pool_renews_claims_while_handlers_run(database):
    seen = {}

    def slow(claim_, context):
        time.sleep(1.2)  # three times the claim's lifetime
        seen["lost"] = claim_.lost
        claim_.check()
        return jobs.Outcome(jobs.SUCCEEDED)

    slow_kind = kind(handler=slow, claim_secs=0.4)
    (job_id,) = queue(1)
    pool = jobs.Pool(None, [slow_kind])
    assert pool.poll() == 1
    stolen, done = [], threading.Event()

    def renew_and_try_to_steal():
        while not done.is_set():
            pool.renew_due()
            stolen.extend(claim(owner="thief", of=slow_kind))
            time.sleep(pool.renew_interval())

    renewer = threading.Thread(target=renew_and_try_to_steal)
    renewer.start()
    pool.wait(10)
    done.set()
    renewer.join()
    assert stolen == [] and seen == {"lost": False}
    assert job(job_id).state == "succeeded"


KILLED_HOLDER = """
import sys, time
from app.core import jobs
from app.core.db import connection, init_database

init_database(sys.argv[1])
kind = jobs.Kind("test.work", lambda c, x: None, lambda x: jobs.Limits(claim_secs=1.0))
with connection():
    (held,) = jobs.claim(kind, 1, 1000, 1.0, "doomed")
print(held.job_id, flush=True)
while held.renew():
    time.sleep(0.2)
"""


def test_a_killed_holders_claim_expires_and_another_claimer_takes_the_job(database):
    (job_id,) = queue(1)
    holder = subprocess.Popen([sys.executable, "-c", KILLED_HOLDER, database], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == job_id
        time.sleep(1.5)  # longer than the claim's lifetime: only renewal keeps it held
        assert claim(owner="survivor") == []
        os.kill(holder.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        holder.wait(10)
        taken = []
        while not taken and time.monotonic() - killed_at < 5:
            taken = claim(owner="survivor")
            time.sleep(0.05)
        waited = time.monotonic() - killed_at
    finally:
        if holder.poll() is None:
            holder.kill()
    (survivor,) = taken
    assert survivor.job_id == job_id and survivor.attempt == 1
    assert waited < 2.5  # within a claim's lifetime (1 s) of the last renewal, plus polling
    assert job(job_id).claimed_by == "survivor"


# ---- retries ----------------------------------------------------------------------------


def test_retry_delays_have_jitter_within_bounds_and_run_out():
    schedule = [10.0, 100.0]
    delays = [jobs.retry_delay(schedule, 1, None) for _ in range(200)]
    assert all(8.0 <= d <= 12.0 for d in delays) and len({round(d, 3) for d in delays}) > 50
    assert min(delays) < 9.0 and max(delays) > 11.0  # the jitter spans its range
    assert all(80.0 <= jobs.retry_delay(schedule, 2, None) <= 120.0 for _ in range(50))
    assert jobs.retry_delay(schedule, 3, None) is None
    assert jobs.retry_delay([], 1, None) is None
    assert jobs.retry_delay(schedule, 1, 50.0) == 50.0  # asked for, within the schedule's longest wait
    assert jobs.retry_delay(schedule, 1, 10_000.0) == 100.0


def test_failures_follow_the_kinds_schedule_then_give_up(database):
    calls = []

    def note(name):
        return lambda claim_, outcome, context: calls.append((name, claim_.attempt, claim_.state))

    retried = kind(schedule=(1.0, 2.0), on_attempt=note("attempt"), on_failure=note("failure"),
                   on_gave_up=note("gave_up"), on_success=note("success"))
    (job_id,) = queue(1)
    bounds = [(0.8, 1.2), (1.6, 2.4)]
    for number, (low, high) in enumerate(bounds, start=1):
        (held,) = claim(of=retried)
        assert held.attempt == number and held.failures == number - 1
        with connection():
            before = utcnow()
            assert jobs.record(held, jobs.Outcome(jobs.RETRY, error="busy"), None) == jobs.PENDING
        row = job(job_id)
        wait = (row.next_run_at - before).total_seconds()
        assert low - 0.05 <= wait <= high + 0.05, wait
        assert claim(of=retried) == []  # not due before its retry time
        with connection():
            Job.update(next_run_at=utcnow()).where(Job.id == job_id).execute()
    (last,) = claim(of=retried)
    with connection():
        assert jobs.record(last, jobs.Outcome(jobs.RETRY, error="busy"), None) == jobs.FAILED
    row = job(job_id)
    assert (row.state, row.attempts, row.failures, row.next_run_at) == ("failed", 3, 3, None)
    assert row.finished_at is not None
    assert calls == [("failure", 1, "pending"), ("attempt", 1, "pending"), ("failure", 2, "pending"),
                     ("attempt", 2, "pending"), ("failure", 3, "pending"), ("attempt", 3, "failed"),
                     ("gave_up", 3, "failed")]


def test_a_kind_can_end_retries_and_requeue_starts_a_fresh_run(database):
    vetoing = kind(on_failure=lambda claim_, outcome, context: False)
    (job_id,) = queue(1)
    (held,) = claim(of=vetoing)
    with connection():
        assert jobs.record(held, jobs.Outcome(jobs.RETRY), None) == jobs.FAILED
        assert jobs.requeue(job_id)
    row = job(job_id)
    assert (row.state, row.failures, row.attempts) == ("pending", 0, 1)
    (again,) = claim(of=vetoing)
    assert again.attempt == 2 and again.failures == 0
    with connection():
        assert not jobs.requeue(job_id)  # it is being run right now


def test_a_handler_error_is_recorded_as_a_retry(database):
    def broken(claim_, context):
        raise ValueError("bad payload")

    (job_id,) = queue(1)
    pool = jobs.Pool(None, [kind(handler=broken, schedule=(60.0,))])
    pool.poll()
    pool.wait(10)
    row = job(job_id)
    assert row.state == "pending" and row.attempts == 1 and row.failures == 1 and row.claim_token is None
    assert row.next_run_at > utcnow() + timedelta(seconds=40)


# ---- fairness -----------------------------------------------------------------------------


def test_partitions_share_the_slots_in_turn(database):
    queue(20, "backlogged")
    queue(2, "quiet")
    queue(1, "rare")
    claims = claim(limit=6)
    by_partition = {key: sum(1 for c in claims if c.partition == key) for key in ("backlogged", "quiet", "rare")}
    assert by_partition == {"backlogged": 3, "quiet": 2, "rare": 1}
    # Once the others are served, the backlog gets every slot.
    assert [c.partition for c in claim(limit=6)] == ["backlogged"] * 6


def test_the_per_partition_cap_holds_across_claimers(database):
    queue(5, "a")
    queue(5, "b")
    first = claim(limit=10, per_partition=2, owner="worker-1")
    assert sorted(c.partition for c in first) == ["a", "a", "b", "b"]
    assert claim(limit=10, per_partition=2, owner="worker-2") == []
    with connection():
        jobs.release(next(c for c in first if c.partition == "a"))
    (refill,) = claim(limit=10, per_partition=2, owner="worker-2")
    assert refill.partition == "a"


def test_kinds_do_not_see_each_others_jobs(database):
    other = kind(name="test.other")
    queue(2, name=other.name)
    assert claim() == []
    assert len(claim(of=other)) == 2


def test_cancel_spares_jobs_in_flight_and_sweep_removes_finished_ones(database):
    queue(3, "a")
    (running,) = claim(limit=1)
    with connection():
        assert jobs.cancel(WORK.name, "a") == 2
        assert jobs.record(running, jobs.Outcome(jobs.SUCCEEDED)) == jobs.SUCCEEDED
        assert jobs.sweep(WORK.name, utcnow() - timedelta(days=1)) == 0
        assert jobs.sweep(WORK.name, utcnow() + timedelta(seconds=1)) == 3
        assert Job.select().count() == 0
