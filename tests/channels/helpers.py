"""Driving channels end to end: a served Lockgate whose channels point at fake platforms."""

from __future__ import annotations

from app.core.db import connection, init_database
from app.core.models import UnitState
from tests.support.server import RELAXED_LIMITS

# Fast reconnects and health probes, so failures and recoveries show within a test's patience.
FAST = {"channels": {"reconnect_first_secs": 0.2, "reconnect_max_secs": 1.0, "health_interval_secs": 1.0,
                     "circuit_after_failures": 1000},
        "rate_limits": {**RELAXED_LIMITS["rate_limits"], "channels_read": "10000/s", "channels_write": "10000/s",
                        "channels_inbound": "10000/s"}}


def config(channels: dict) -> dict:
    return {**FAST, "channels_config": channels}


def channel(api, name: str) -> dict:
    listed = api.get("/channels").json()["channels"]
    return next(found for found in listed if found["name"] == name)


def status_is(api, name: str, status: str):
    found = channel(api, name)
    return found if found["status"] == status else None


def owner_pid(server, name: str) -> int | None:
    """The pid of the worker running the channel's unit."""
    init_database(server.database_url)
    with connection():
        row = UnitState.get_or_none(UnitState.id == f"channel:{name}")
    if row is None or row.state != "running":
        return None
    pid = int(row.owner.split(":")[1])
    return pid if pid in server.worker_pids() else None
