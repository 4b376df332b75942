"""Webhooks end to end: real gunicorn (two gevent workers), a real receiver on loopback."""

import os
import signal
import time

import pytest
import requests

from tests.hooks.receiver import Receiver
from tests.support.databases import database_url
from tests.support.server import GunicornServer

pytestmark = pytest.mark.e2e

HOOKS_CONFIG = {
    "hooks": {
        "allow_private_targets": True,  # the receiver listens on loopback
        "retry_schedule": ["0.2s", "0.4s"],
        "disable_after_failures": 3,
        "timeout_secs": 3.0,
        "poll_interval_secs": 0.1,
    },
}


@pytest.fixture(scope="module")
def receiver(backend):
    """One per backend's run of this module, so requests of one run never mix with another's."""
    with Receiver() as instance:
        yield instance


@pytest.fixture(scope="module")
def hooks_server(tmp_path_factory, backend):
    tmp = tmp_path_factory.mktemp("hooks-server")
    with database_url(backend, tmp) as url:
        instance = GunicornServer(tmp, url, HOOKS_CONFIG).start()
        yield instance
        instance.stop()


def wait_until(condition, timeout: float = 15.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {timeout}s")
        time.sleep(interval)


def register(server, receiver, path: str, events, **extra) -> dict:
    response = requests.post(f"{server.url}/api/v1/hooks", json={"url": receiver.url + path, "events": events,
                                                                 **extra},
                             headers=server.headers("write"), timeout=10)
    assert response.status_code == 201, response.text
    return response.json()


def deliveries(server, hook_id: str) -> list[dict]:
    response = requests.get(f"{server.url}/api/v1/hooks/{hook_id}/deliveries", headers=server.headers("read"),
                            timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["deliveries"]


def ping(server, hook_id: str) -> dict:
    response = requests.post(f"{server.url}/api/v1/hooks/{hook_id}/test", headers=server.headers("write"),
                             timeout=10)
    assert response.status_code == 202, response.text
    return response.json()


def settled(server, hook_id: str, count: int = 1):
    """The hook's deliveries once ``count`` exist and none is pending."""
    listed = deliveries(server, hook_id)
    return listed if len(listed) >= count and all(d["status"] != "pending" for d in listed) else None


def test_deliveries_are_signed_for_bus_events_and_pings(hooks_server, receiver):
    hook = register(hooks_server, receiver, "/signed", ["config.updated"])
    response = requests.patch(f"{hooks_server.url}/api/v1/config", json={"agent.max_turns": 42},
                              headers=hooks_server.headers("admin"), timeout=10)
    assert response.status_code == 200
    queued = ping(hooks_server, hook["id"])

    requests_ = receiver.wait_count(2, path="/signed")
    events = {r.webhook_id: r.verify(hook["secret"]) for r in requests_}
    assert sorted(e["type"] for e in events.values()) == ["config.updated", "ping"]
    config_event = next(e for e in events.values() if e["type"] == "config.updated")
    assert config_event["data"] == {"updated": ["agent.max_turns"], "reload_required": False}
    assert events[queued["id"]]["data"]["hook_id"] == hook["id"]

    listed = wait_until(lambda: settled(hooks_server, hook["id"], 2), message="deliveries recorded")
    assert {d["id"] for d in listed} == set(events)
    assert all(d["status"] == "succeeded" and d["attempts"][0]["status_code"] == 200 for d in listed)


def test_500s_are_retried_with_the_same_webhook_id(hooks_server, receiver):
    hook = register(hooks_server, receiver, "/flaky", ["*"])
    receiver.script("/flaky", 500, 500, 200)
    queued = ping(hooks_server, hook["id"])

    attempts = receiver.wait_count(3, path="/flaky")
    assert [r.webhook_id for r in attempts] == [queued["id"]] * 3
    assert len({r.body for r in attempts}) == 1
    for request in attempts:
        request.verify(hook["secret"])
    (delivery,) = wait_until(lambda: settled(hooks_server, hook["id"]), message="delivery settled")
    assert delivery["status"] == "succeeded"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]
    assert [a["next_retry_at"] is not None for a in delivery["attempts"]] == [True, True, False]


def test_a_400_fails_at_once(hooks_server, receiver):
    hook = register(hooks_server, receiver, "/reject", ["*"])
    receiver.script("/reject", 400)
    ping(hooks_server, hook["id"])
    (delivery,) = wait_until(lambda: settled(hooks_server, hook["id"]), message="delivery settled")
    assert delivery["status"] == "failed"
    assert delivery["attempts"][0]["status_code"] == 400 and delivery["attempts"][0]["next_retry_at"] is None
    time.sleep(0.8)  # longer than the whole retry schedule
    assert len(receiver.received("/reject")) == 1


def test_repeated_failures_disable_the_hook(hooks_server, receiver):
    failing = register(hooks_server, receiver, "/down", ["session.created"])
    watcher = register(hooks_server, receiver, "/watcher", ["hook.disabled"])
    receiver.default("/down", 503)
    ping(hooks_server, failing["id"])

    (announcement,) = receiver.wait_count(1, path="/watcher")
    event = announcement.verify(watcher["secret"])
    assert event["type"] == "hook.disabled" and event["data"]["id"] == failing["id"]
    assert event["data"]["consecutive_failures"] == 3
    assert len(receiver.received("/down")) == 3
    state = requests.get(f"{hooks_server.url}/api/v1/hooks/{failing['id']}", headers=hooks_server.headers("read"),
                         timeout=10).json()
    assert state["active"] is False and state["disabled_reason"] == "3 consecutive failed deliveries"
    response = requests.post(f"{hooks_server.url}/api/v1/hooks/{failing['id']}/test",
                             headers=hooks_server.headers("write"), timeout=10)
    assert response.status_code == 409


def test_secrets_never_appear_in_any_get(hooks_server, receiver):
    generated = register(hooks_server, receiver, "/quiet", ["*"])
    supplied_secret = "whsec_" + "c3VwcGxpZWQtc2VjcmV0LWtleS1ieXRlcw=="
    supplied = register(hooks_server, receiver, "/quiet2", ["*"], secret=supplied_secret)
    assert "secret" not in supplied
    rotated = requests.patch(f"{hooks_server.url}/api/v1/hooks/{generated['id']}", json={"rotate_secret": True},
                             headers=hooks_server.headers("write"), timeout=10).json()
    ping(hooks_server, generated["id"])
    receiver.wait_count(1, path="/quiet")
    # The ping is signed with the rotated secret.
    receiver.received("/quiet")[0].verify(rotated["secret"])

    secrets_ = [generated["secret"], rotated["secret"], supplied_secret]
    for path in ("/api/v1/hooks", f"/api/v1/hooks/{generated['id']}", f"/api/v1/hooks/{supplied['id']}",
                 f"/api/v1/hooks/{generated['id']}/deliveries", "/api/v1/config", "/api/v1/openapi.json",
                 "/api/v1/logs?level=trace&limit=1000", "/api/v1/status"):
        response = requests.get(hooks_server.url + path, headers=hooks_server.headers("admin"), timeout=10)
        assert response.status_code == 200, path
        for secret in secrets_:
            assert secret not in response.text, path
            assert secret.removeprefix("whsec_") not in response.text, path


def test_private_targets_are_refused_with_the_default_policy(server, receiver):
    response = requests.post(f"{server.url}/api/v1/hooks", json={"url": receiver.url + "/x", "events": ["*"]},
                             headers=server.headers("write"), timeout=10)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "bad_request"
    assert "loopback" in error["details"]["url"][0]

    public = requests.post(f"{server.url}/api/v1/hooks", json={"url": "https://93.184.215.14/x", "events": ["*"]},
                           headers=server.headers("write"), timeout=10)
    assert public.status_code == 201
    moved = requests.patch(f"{server.url}/api/v1/hooks/{public.json()['id']}",
                           json={"url": "http://169.254.169.254/latest"}, headers=server.headers("write"), timeout=10)
    assert moved.status_code == 400 and "link-local" in moved.json()["error"]["details"]["url"][0]
    listed = requests.get(f"{server.url}/api/v1/hooks", headers=server.headers("read"), timeout=10).json()["hooks"]
    assert [h["url"] for h in listed] == ["https://93.184.215.14/x"]


# ---- crash safety -----------------------------------------------------------------


def claim_holders(database_url_: str) -> dict[int, list[str]]:
    """Worker pid -> delivery ids it holds a claim on, read straight from the database."""
    from app.core.db import connection, init_database
    from app.core.models import Job
    from app.hooks.models import HookDelivery

    init_database(database_url_)
    holders: dict[int, list[str]] = {}
    with connection():
        claimed = HookDelivery.select(HookDelivery.id, Job.claimed_by).join(Job).where(Job.claimed_by.is_null(False))
        for row in claimed:
            pid = int(row.job.claimed_by.split(":")[1])  # host:pid:nonce
            holders.setdefault(pid, []).append(row.id)
    return holders


def waiting_sender(server, receiver, path: str, hold: float = 1.0):
    """(pid, delivery ids) of a worker with claimed deliveries the receiver has and will hold for 0.5 s more."""
    now = time.time()
    waiting = {r.webhook_id for r in receiver.received(path) if not r.finished and now - r.started < hold - 0.5}
    for pid, claimed in claim_holders(server.database_url).items():
        held = [delivery_id for delivery_id in claimed if delivery_id in waiting]
        if held:
            return pid, held
    return None


def test_killing_a_worker_mid_delivery_loses_nothing(server_factory, receiver):
    server = server_factory({"hooks": {"allow_private_targets": True, "timeout_secs": 2.0,
                                       "retry_schedule": ["0.2s"], "poll_interval_secs": 0.1,
                                       "max_in_flight_per_hook": 4}})
    hook = register(server, receiver, "/crash", ["*"])
    receiver.default("/crash", 200, delay=1.0)
    queued = [ping(server, hook["id"])["id"] for _ in range(12)]

    # The victim is a worker waiting on answers the receiver holds back: it sent those deliveries and
    # cannot have recorded them (a claim alone may not have been sent yet, so it proves nothing).
    victim, in_flight = wait_until(lambda: waiting_sender(server, receiver, "/crash"), message="deliveries in flight")
    assert victim in server.worker_pids()
    os.kill(victim, signal.SIGKILL)

    # Every delivery ends up recorded as delivered: the killed worker's ones
    # only after their claims lapse and the surviving (or respawned) worker sends them again.
    listed = wait_until(lambda: settled(server, hook["id"], 12), timeout=40, message="deliveries recorded")
    assert {d["id"] for d in listed} == set(queued)
    assert all(d["status"] == "succeeded" for d in listed)

    received = receiver.received("/crash")
    by_id: dict[str, list] = {}
    for request in received:
        request.verify(hook["secret"])
        by_id.setdefault(request.webhook_id, []).append(request)
    assert set(by_id) == set(queued)
    not_sent_again = [delivery_id for delivery_id in in_flight if len(by_id[delivery_id]) < 2]
    assert not not_sent_again, f"deliveries the killed worker was waiting on, not sent again: {not_sent_again}"
    # No delivery was ever being sent by two workers at once.
    for delivery_id, copies in by_id.items():
        copies.sort(key=lambda r: r.started)
        for earlier, later in zip(copies, copies[1:], strict=False):
            assert later.started >= earlier.finished, delivery_id
