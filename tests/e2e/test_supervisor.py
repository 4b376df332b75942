"""Supervised units in a real gunicorn: one worker runs a singleton, any process restarts it, a kill moves it."""

import os
import signal

import pytest

from app.core import events
from app.core.db import connection, init_database
from app.core.models import Lease, UnitState
from app.core.supervisor import TOPIC_PREFIX
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e

UNIT = "logs-retention"
TAKEOVER_SECS = 10.0 + 10.0 / 3 + 5  # the singleton ttl, one poll of the other worker, and slack


def row(name=UNIT):
    with connection():
        return UnitState.get_or_none(UnitState.id == name)


def running(server, owner=None):
    found = row()
    if found is None or found.state != "running" or (owner is not None and found.owner != owner):
        return None
    return found if worker_pid(found.owner) in server.worker_pids() else None


def all_owned_by_live_workers(server) -> bool:
    with connection():
        owners = [unit.owner for unit in UnitState.select()]
    return all(worker_pid(owner) in server.worker_pids() for owner in owners)


def worker_pid(owner: str) -> int:
    return int(owner.split(":")[1])


def test_a_singleton_unit_restarts_on_command_and_moves_when_its_worker_dies(server_factory):
    server = server_factory({"logs": {"sweep_interval_secs": 0.2}})
    init_database(server.database_url)
    before = wait_until(lambda: running(server), timeout=20, message=lambda: f"{UNIT} running\n{server.log()}")
    assert before.restarts == 0
    with connection():
        assert Lease.get_by_id(f"unit:{UNIT}").owner == before.owner

    # Any process may ask: this one is not a worker, the worker that runs the unit restarts it.
    with connection():
        events.publish(f"{TOPIC_PREFIX}restart", {"name": UNIT})
    restarted = wait_until(lambda: (found := running(server, before.owner)) and found.restarts == 1 and found,
                           timeout=10, message=lambda: f"{UNIT} restarted\n{server.log()}")
    assert restarted.since > before.since

    os.kill(worker_pid(before.owner), signal.SIGKILL)
    moved = wait_until(lambda: (found := running(server)) and found.owner != before.owner and found,
                       timeout=TAKEOVER_SECS, message=lambda: f"{UNIT} taken over\n{server.log()}")
    with connection():
        assert Lease.get_by_id(f"unit:{UNIT}").owner == moved.owner
    assert moved.restarts == 1  # kept across the move: the count is the unit's, not one worker's

    wait_until(lambda: all_owned_by_live_workers(server), timeout=TAKEOVER_SECS, message="every unit taken over")
    assert server.stop() == 0
    with connection():
        assert {unit.state for unit in UnitState.select()} == {"stopped"}
        assert Lease.select().where(Lease.name.startswith("unit:")).count() == 0
