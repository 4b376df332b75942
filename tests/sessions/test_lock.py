import threading
import time
from datetime import timedelta

import pytest

from app.core import leases
from app.core.db import connection, utcnow
from app.core.models import Lease
from app.sessions.lock import SessionBusy, SessionLock, forget_expired, worker_locks


@pytest.fixture
def db(app):
    with connection():
        yield


def test_a_second_turn_waits_for_the_first(db):
    first = SessionLock("sess_a", ttl=5, wait=5).acquire()
    order = []

    def second_turn():
        lock = SessionLock("sess_a", ttl=5, wait=5).acquire()
        order.append("second")
        lock.release()

    thread = threading.Thread(target=second_turn)
    thread.start()
    time.sleep(0.2)
    order.append("first done")
    first.release()
    thread.join(5)
    assert order == ["first done", "second"]
    assert len(worker_locks) == 0


def test_other_sessions_are_not_blocked(db):
    held = SessionLock("sess_a", ttl=5, wait=5).acquire()
    other = SessionLock("sess_b", ttl=5, wait=0).acquire()
    other.release()
    held.release()


def test_waiting_too_long_is_a_409(db):
    held = SessionLock("sess_a", ttl=5, wait=5).acquire()
    started = time.monotonic()
    with pytest.raises(SessionBusy) as raised:
        SessionLock("sess_a", ttl=5, wait=0.2).acquire()
    assert 0.15 < time.monotonic() - started < 2
    assert raised.value.status == 409 and "busy" in raised.value.message
    held.release()
    assert len(worker_locks) == 0


def test_a_dead_workers_lock_expires(db):
    # Another worker took the session and died: its lease is never renewed.
    Lease.insert(name="session:sess_a", owner="gone:1:dead", expires_at=utcnow() + timedelta(seconds=0.5)).execute()
    started = time.monotonic()
    lock = SessionLock("sess_a", ttl=5, wait=5).acquire()
    assert time.monotonic() - started >= 0.4
    assert Lease.get(Lease.name == "session:sess_a").owner == leases.owner_id()
    lock.release()
    assert Lease.get_or_none(Lease.name == "session:sess_a") is None


def test_the_lock_is_renewed_while_the_turn_runs(db):
    lock = SessionLock("sess_a", ttl=1, wait=1).acquire()
    first_expiry = Lease.get(Lease.name == "session:sess_a").expires_at
    time.sleep(0.8)
    assert Lease.get(Lease.name == "session:sess_a").expires_at > first_expiry
    assert lock.confirm()
    lock.release()


def test_a_turn_that_lost_its_lock_cannot_confirm_it(db):
    lock = SessionLock("sess_a", ttl=5, wait=1).acquire()
    Lease.update(owner="other:2:worker").where(Lease.name == "session:sess_a").execute()
    assert lock.confirm() is False
    lock.release()
    lock.release()  # idempotent
    assert Lease.get(Lease.name == "session:sess_a").owner == "other:2:worker"
    assert len(worker_locks) == 0


def test_locks_left_by_dead_workers_are_swept(db):
    now = utcnow()
    Lease.insert_many([
        {"name": "session:sess_dead", "owner": "gone:1:dead", "expires_at": now - timedelta(seconds=5)},
        {"name": "session:sess_live", "owner": "here:2:live", "expires_at": now + timedelta(seconds=30)},
        {"name": "logs-retention", "owner": "gone:1:dead", "expires_at": now - timedelta(seconds=5)},
    ]).execute()
    assert forget_expired() == 1
    assert sorted(lease.name for lease in Lease.select()) == ["logs-retention", "session:sess_live"]
