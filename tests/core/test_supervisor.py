"""The supervisor on the real database backends.

Workers are simulated in this process by supervisors with distinct owners,
and are real separate processes where one must be killed or must receive a
command over the event bus.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from app.core import supervisor as supervisors
from app.core.db import connection, utcnow
from app.core.errors import BadRequest, NotFound
from app.core.models import Event, Lease, UnitState
from app.core.supervisor import Supervisor, every
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]

# A worker of its own: one singleton unit "beat" that counts its runs, stopped by SIGTERM like a served worker.
WORKER = """
import signal, sys, threading
from app.core import background
from app.core.db import init_database
from app.core.leases import owner_id
from app.core.supervisor import Supervisor, every
init_database(sys.argv[1])
asked_to_stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: asked_to_stop.set())
worker = Supervisor()
worker.declare("beat", every(lambda: 0.05, lambda: None), singleton=True, ttl=float(sys.argv[2]))
worker.start()
print(owner_id(), flush=True)
while not asked_to_stop.wait(0.1):
    pass
background.stop()
"""


@pytest.fixture
def db(app):
    with connection():
        yield


@pytest.fixture
def workers():
    """Supervisors standing for workers of this process, all stopped after the test."""
    made = []

    def make(owner):
        made.append(Supervisor(owner=owner))
        return made[-1]

    yield make
    for worker in made:
        worker.stop()


@pytest.fixture
def worker_process(db_url):
    started = []

    def start(ttl=1.0):
        process = subprocess.Popen([sys.executable, "-c", WORKER, db_url, str(ttl)], cwd=ROOT,
                                   stdout=subprocess.PIPE, text=True)
        started.append(process)
        owner = process.stdout.readline().strip()
        assert owner, "the worker process did not start"
        return process, owner

    yield start
    for process in started:
        process.kill()
        process.wait(5)


def state(name):
    with connection():
        return UnitState.get_or_none(UnitState.id == name)


def has_state(name, expected, owner=None):
    row = state(name)
    return row is not None and row.state == expected and (owner is None or row.owner == owner) and row


class Probe:
    """A unit that notes each run, and how many of its runs are going at once across workers."""

    def __init__(self):
        self.runs = []  # (owner, started)
        self.active = 0
        self.most_active = 0
        self.stopped = threading.Event()
        self._guard = threading.Lock()

    def __call__(self, owner):
        def run(ctx):
            with self._guard:
                self.runs.append((owner, time.monotonic()))
                self.active += 1
                self.most_active = max(self.most_active, self.active)
            try:
                ctx.ready()
                while not ctx.wait(0.01):
                    pass
            finally:
                with self._guard:
                    self.active -= 1
                self.stopped.set()

        return run


def test_a_singleton_runs_in_one_worker_and_moves_when_it_stops(db, workers):
    probe = Probe()
    first, second = workers("w1:1:a"), workers("w2:2:b")
    for worker in (first, second):
        worker.declare("beat", probe(worker.owner), singleton=True, ttl=0.6)
        worker.start(listen=False)
    running = wait_until(lambda: has_state("beat", "running"), timeout=5, message="a worker running beat")
    holder, other = (first, second) if running.owner == first.owner else (second, first)
    assert holder.running_here("beat") and not other.running_here("beat")
    assert Lease.get_by_id("unit:beat").owner == holder.owner

    holder.stop()
    took_over = wait_until(lambda: has_state("beat", "running", other.owner), timeout=2, message="takeover")
    assert took_over.restarts == 0
    assert probe.most_active == 1
    assert [owner for owner, _ in probe.runs] == [holder.owner, other.owner]


def test_a_lost_lease_stops_the_unit_at_once_and_it_is_taken_back_later(db, workers):
    probe = Probe()
    worker = workers("w1:1:a")
    worker.declare("beat", probe(worker.owner), singleton=True, ttl=0.6)
    worker.start(listen=False)
    wait_until(lambda: has_state("beat", "running"), timeout=5, message="beat running")

    Lease.update(owner="thief:9:z", expires_at=utcnow() + timedelta(seconds=1)).where(
        Lease.name == "unit:beat").execute()
    stolen_at = time.monotonic()
    assert probe.stopped.wait(0.2 + 0.3), "the unit kept running without its lease"
    assert time.monotonic() - stolen_at <= 0.2 + 0.3
    assert not worker.running_here("beat")
    time.sleep(0.5)
    assert len(probe.runs) == 1  # not while the thief's lease is live

    wait_until(lambda: len(probe.runs) == 2, timeout=3, message="beat taken back after the thief's lease expired")
    assert Lease.get_by_id("unit:beat").owner == worker.owner
    assert probe.most_active == 1


def test_a_crashing_unit_backs_off_exponentially_up_to_a_cap(db, workers):
    starts, seen_at_start = [], []

    def flaky(ctx):
        starts.append(time.monotonic())
        with connection():
            row = UnitState.get_by_id(f"flaky@{worker.owner}")
        seen_at_start.append((row.state, row.restarts, row.last_error))
        if len(starts) <= 5:
            raise ValueError(f"boom {len(starts)}")
        ctx.ready()
        ctx.wait(30)

    worker = workers("w1:1:a")
    worker.declare("flaky", flaky, backoff=(0.1, 0.4))
    worker.start(listen=False)
    row_id = f"flaky@{worker.owner}"

    running = wait_until(lambda: has_state(row_id, "running"), timeout=5, message="flaky running at last")
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:], strict=False)]
    assert len(gaps) == 5
    assert 0.1 <= gaps[0] < 0.3 and 0.2 <= gaps[1] < 0.4  # doubling
    assert all(0.4 <= gap < 0.7 for gap in gaps[2:])  # capped
    assert running.restarts == 5
    assert running.last_error == "ValueError: boom 5"
    assert running.name == "flaky" and running.owner == worker.owner
    assert seen_at_start[:3] == [("starting", 0, None), ("starting", 1, "ValueError: boom 1"),
                                 ("starting", 2, "ValueError: boom 2")]


def test_a_unit_failing_at_the_cap_is_shown_as_error(db, workers):
    def broken(ctx):
        raise RuntimeError("no token configured")

    worker = workers("w1:1:a")
    worker.declare("broken", broken, backoff=(0.05, 0.1))
    worker.start(listen=False)
    row = wait_until(lambda: has_state(f"broken@{worker.owner}", "error"), timeout=5, message="error state")
    assert row.last_error == "RuntimeError: no token configured" and row.restarts >= 1
    [shared] = [entry for entry in supervisors.states() if entry["name"] == "broken"]
    assert shared["owner"] == worker.owner and shared["last_error"] == "RuntimeError: no token configured"


def test_a_restart_runs_the_unit_again_at_once_and_counts(db, workers):
    probe = Probe()
    worker = workers("w1:1:a")
    worker.declare("beat", probe(worker.owner), singleton=True, ttl=5)
    worker.start(listen=False)
    first = wait_until(lambda: has_state("beat", "running"), timeout=5, message="beat running")
    asked = time.monotonic()
    assert worker.restart_unit("beat") is True
    again = wait_until(lambda: (row := has_state("beat", "running")) and row.restarts == 1 and row,
                       timeout=2, message="restarted")
    assert len(probe.runs) == 2 and probe.runs[1][1] - asked < 0.5
    assert again.since > first.since
    assert Lease.get_by_id("unit:beat").owner == worker.owner  # kept across the restart
    assert probe.most_active == 1


def test_stop_and_start_by_name(db, workers):
    probe = Probe()
    worker = workers("w1:1:a")
    worker.declare("beat", probe(worker.owner), singleton=True, ttl=5)
    worker.start(listen=False)
    wait_until(lambda: has_state("beat", "running"), timeout=5, message="beat running")
    assert worker.stop_unit("beat") is True
    assert has_state("beat", "stopped", worker.owner)
    assert Lease.get_or_none(Lease.name == "unit:beat") is None
    assert worker.restart_unit("beat") is False  # not running here
    worker.start_unit("beat")
    wait_until(lambda: has_state("beat", "running"), timeout=5, message="beat running again")
    assert len(probe.runs) == 2
    # A start that arrives while the unit is still stopping (as bus commands may) is not lost.
    worker.stop_unit("beat", timeout=None)
    worker.start_unit("beat")
    wait_until(lambda: len(probe.runs) == 3 and has_state("beat", "running"), timeout=5, message="started again")
    assert probe.most_active == 1


def test_periodic_units_run_their_step_every_interval(db, workers):
    ticks = []
    worker = workers("w1:1:a")
    worker.declare("tick", every(lambda: 0.1, lambda: ticks.append(time.monotonic())))
    worker.start(listen=False)
    wait_until(lambda: len(ticks) >= 4, timeout=5, message="four ticks")
    assert has_state(f"tick@{worker.owner}", "running")
    worker.stop_unit("tick")
    count = len(ticks)
    time.sleep(0.3)
    assert len(ticks) == count
    assert all(0.09 <= later - earlier < 0.4 for earlier, later in zip(ticks, ticks[1:], strict=False))


def test_unknown_units_and_actions_are_client_errors(db, workers):
    worker = workers("w1:1:a")
    worker.declare("beat", every(lambda: 1, lambda: None))
    with pytest.raises(NotFound) as missing:
        worker.request("restart", "nope")
    assert missing.value.status == 404 and missing.value.details == {"units": ["beat"]}
    with pytest.raises(BadRequest) as bad:
        worker.request("explode", "beat")
    assert bad.value.status == 400
    with pytest.raises(NotFound):
        worker.restart_unit("nope")
    assert Event.select().count() == 0


def test_a_killed_workers_unit_is_taken_over_after_its_lease_expires(db, workers, worker_process):
    process, owner = worker_process(ttl=1.0)
    wait_until(lambda: has_state("beat", "running", owner), timeout=10, message="the other process running beat")
    probe = Probe()
    mine = workers("w1:1:a")
    mine.declare("beat", probe(mine.owner), singleton=True, ttl=1.0)
    mine.start(listen=False)
    time.sleep(1.5)
    assert probe.runs == []  # the other process renews its lease

    os.kill(process.pid, signal.SIGKILL)
    process.wait(5)
    killed = time.monotonic()
    wait_until(lambda: has_state("beat", "running", mine.owner), timeout=5, message="takeover")
    assert time.monotonic() - killed <= 1.0 + 1.0 / 3 + 0.5


def test_a_restart_published_by_another_process_restarts_the_unit_where_it_runs(db, db_url, worker_process):
    process, owner = worker_process(ttl=5.0)
    before = wait_until(lambda: has_state("beat", "running", owner), timeout=10, message="beat running")
    time.sleep(0.5)  # the worker's bus tailer has read the head of the table

    publisher = Supervisor(owner="w1:1:a")
    publisher.declare("beat", every(lambda: 1, lambda: None), singleton=True)
    publisher.request("restart", "beat")  # this process only publishes: its supervisor is not started
    after = wait_until(lambda: (row := has_state("beat", "running", owner)) and row.restarts == 1 and row,
                       timeout=5, message="beat restarted by the other process")
    assert after.since > before.since
    assert process.poll() is None


def test_a_worker_stopping_stops_its_units_and_frees_their_leases(db, db_url, worker_process, workers):
    process, owner = worker_process(ttl=30.0)
    wait_until(lambda: has_state("beat", "running", owner), timeout=10, message="beat running")
    process.send_signal(signal.SIGTERM)
    assert process.wait(5) == 0
    assert has_state("beat", "stopped", owner)
    with connection():
        assert Lease.get_or_none(Lease.name == "unit:beat") is None  # released, not left to a 30s expiry
    probe = Probe()
    mine = workers("w1:1:a")
    mine.declare("beat", probe(mine.owner), singleton=True, ttl=30.0)
    mine.start(listen=False)
    wait_until(lambda: has_state("beat", "running", mine.owner), timeout=2, message="taken at once")
