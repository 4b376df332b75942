"""Held leases on the real database backends: renewal, loss, waiting, takeover from a killed process."""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from peewee import OperationalError

from app.core import leases
from app.core.db import connection, utcnow
from app.core.leases import HeldLease
from app.core.models import Lease

ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import sys, time
from app.core.db import init_database
from app.core.leases import HeldLease
init_database(sys.argv[1])
lease = HeldLease(sys.argv[2], float(sys.argv[3]))
assert lease.acquire(wait=10)
print(lease.owner, flush=True)
time.sleep(60)
"""


@pytest.fixture
def db(app):
    with connection():
        yield


@pytest.fixture
def held():
    """Leases a test took, released after it whatever happened."""
    taken = []

    def take(name, ttl, **kwargs):
        lease = HeldLease(name, ttl, **kwargs)
        taken.append(lease)
        return lease

    yield take
    for lease in taken:
        lease.release()


def row(name):
    return Lease.get_or_none(Lease.name == name)


def test_a_held_lease_is_renewed_until_released(db, held):
    lease = held("job", ttl=0.6)
    assert lease.acquire()
    first_expiry = row("job").expires_at
    time.sleep(0.5)
    assert row("job").expires_at > first_expiry
    assert lease.held and lease.confirm()
    assert leases.acquire("job", ttl=5)  # the module-level call is this worker's too: a renewal
    lease.release()
    lease.release()  # idempotent
    assert row("job") is None
    assert not lease.held and not lease.confirm()


def test_losing_the_lease_is_noticed_within_one_renewal_interval(db, held):
    lost_at = []
    lease = held("job", ttl=3.0, on_lost=lambda: lost_at.append(time.monotonic()))
    assert lease.acquire()
    # Another worker takes the row over, as it would after a stall past the ttl.
    Lease.update(owner="thief:1:x", expires_at=utcnow() + timedelta(seconds=30)).where(Lease.name == "job").execute()
    stolen_at = time.monotonic()
    interval = 3.0 / 3
    slack = 0.9  # scheduling on a loaded machine; under two intervals in all, so a missed renewal still fails
    assert lease.lost.wait(interval + slack)
    assert len(lost_at) == 1 and lost_at[0] - stolen_at <= interval + slack
    assert not lease.held and not lease.confirm()
    lease.release()
    assert row("job").owner == "thief:1:x"  # the new holder's row is left alone


def test_a_waiter_on_lost_wakes_to_a_loss_already_handled(db, held):
    seen = []

    def slow_handler():
        seen.append(("held", lease.held))  # the loss shows at once, while the handler still runs
        time.sleep(0.3)
        seen.append(("handled", True))

    lease = held("job", ttl=30, on_lost=slow_handler)
    assert lease.acquire()
    Lease.update(owner="thief:1:x").where(Lease.name == "job").execute()
    confirming = threading.Thread(target=lease.confirm)
    confirming.start()
    assert lease.lost.wait(5)
    assert seen == [("held", False), ("handled", True)]
    confirming.join()


def test_a_lease_taken_afresh_while_the_old_loss_is_handled_is_not_marked_lost(db, held):
    handling = threading.Event()

    def slow_handler():
        handling.set()
        time.sleep(0.3)

    lease = held("job", ttl=30, on_lost=slow_handler)
    assert lease.acquire()
    Lease.update(owner="thief:1:x").where(Lease.name == "job").execute()
    confirming = threading.Thread(target=lease.confirm)
    confirming.start()
    assert handling.wait(5)
    Lease.delete().where(Lease.name == "job").execute()  # the thief lets go
    assert lease.acquire()
    confirming.join()
    assert lease.held and not lease.lost.is_set()
    assert row("job").owner == lease.owner


def test_confirm_inside_a_transaction_sees_a_steal_at_once(db, held):
    from app.core.db import transaction

    lost = threading.Event()
    lease = held("job", ttl=30, on_lost=lost.set)
    assert lease.acquire()
    with transaction():
        assert lease.confirm()
    Lease.update(owner="thief:1:x").where(Lease.name == "job").execute()
    with transaction():
        assert lease.confirm() is False
    assert lost.is_set() and lease.lost.is_set()


def test_renewals_failing_for_longer_than_the_ttl_lose_the_lease(db, held, monkeypatch):
    lease = held("job", ttl=0.6)
    assert lease.acquire()
    acquired = time.monotonic()

    def unreachable(*_args):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(leases, "_extend", unreachable)
    assert lease.lost.wait(3)
    # Failed renewals at 0.2, 0.4 and 0.6s are tolerated; the one after the ttl gives up.
    assert 0.6 <= time.monotonic() - acquired < 1.5


def test_waiting_for_a_lease_until_its_holder_releases_or_the_wait_ends(db, held):
    first = held("job", ttl=5, owner="w1:1:a")
    assert first.acquire()
    started = time.monotonic()
    assert held("job", ttl=5, owner="w2:2:b").acquire(wait=0.2) is False
    assert 0.2 <= time.monotonic() - started < 1

    second = held("job", ttl=5, owner="w2:2:b")
    got = []
    waiter = threading.Thread(target=lambda: got.append(second.acquire(wait=5)))
    waiter.start()
    time.sleep(0.3)
    released = time.monotonic()
    first.release()
    waiter.join(5)
    assert got == [True]
    assert time.monotonic() - released < 0.5  # polled, not waited out to the ttl
    assert row("job").owner == "w2:2:b"


def test_a_killed_holders_lease_is_taken_over_when_it_expires(db, db_url, held):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, db_url, "job", "1.5"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        owner = holder.stdout.readline().strip()
        assert owner and row("job").owner == owner
        mine = held("job", ttl=5)
        assert mine.acquire(wait=0) is False  # alive and renewing
        time.sleep(1.6)
        assert mine.acquire(wait=0) is False  # still renewed past its first ttl
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(5)
        killed = time.monotonic()
        assert mine.acquire(wait=5)
        assert time.monotonic() - killed <= 1.5 + 0.5
        assert row("job").owner == mine.owner == leases.owner_id()
    finally:
        holder.kill()
        holder.wait(5)


def test_an_expired_lease_still_naming_its_holder_is_still_held(db, held):
    lease = held("job", ttl=30)
    assert lease.acquire()
    Lease.update(expires_at=utcnow() - timedelta(seconds=1)).where(Lease.name == "job").execute()
    assert lease.confirm()  # nobody took it in between
    assert row("job").expires_at > utcnow() + timedelta(seconds=20)
