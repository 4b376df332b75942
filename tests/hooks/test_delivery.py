"""Delivery in process: a job pool runs inside the test against a real receiver."""

import json
import re
import threading
import time
from datetime import datetime, timedelta

import pytest

from app.core import jobs
from app.core.db import connection, transaction, utcnow
from app.core.models import Job
from app.hooks import outbox, service
from app.hooks.delivery import KIND
from app.hooks.models import Hook, HookAttempt, HookDelivery
from tests.hooks.conftest import delivery_pool
from tests.support.transactions import in_other_transaction


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.rstrip("Z"))


def delivery_status(delivery_id: str) -> str:
    with connection():
        return outbox.find(delivery_id).status


def test_a_published_event_is_delivered_signed(make_hook, publish, deliver, receiver, deliveries):
    hook = make_hook("/in", events=["config.updated"])
    publish("config.updated", {"updated": ["agent.max_turns"], "reload_required": False})
    deliver()

    (request,) = receiver.received("/in")
    body = request.verify(hook["secret"])
    assert body["type"] == "config.updated"
    assert body["data"] == {"updated": ["agent.max_turns"], "reload_required": False}
    assert abs(parse_iso(body["timestamp"]) - utcnow()) < timedelta(seconds=10)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("Lockgate-Webhooks/")
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 10

    (delivery,) = deliveries(hook["id"])
    assert delivery["id"] == request.webhook_id
    assert delivery["event"] == "config.updated" and delivery["status"] == "succeeded"
    assert delivery["completed_at"] and delivery["next_attempt_at"] is None
    (attempt,) = delivery["attempts"]
    assert attempt["status_code"] == 200 and attempt["outcome"] == "succeeded"
    assert attempt["error"] is None and attempt["duration_ms"] >= 0 and attempt["next_retry_at"] is None


def test_outbox_rows_commit_and_roll_back_with_the_publishing_transaction(make_hook, app):
    from app.core import events

    hook = make_hook(events=["config.updated"])
    with connection():
        with pytest.raises(RuntimeError):
            with transaction():
                events.publish("config.updated", {"updated": ["x"], "reload_required": False})
                assert HookDelivery.select().where(HookDelivery.hook == hook["id"]).count() == 1
                raise RuntimeError("the caller's work failed")
        assert HookDelivery.select().count() == 0
        with transaction():
            events.publish("config.updated", {"updated": ["y"], "reload_required": False})
        assert HookDelivery.select().where(HookDelivery.hook == hook["id"]).count() == 1


def test_only_active_subscribed_hooks_get_deliveries(make_hook, client, auth, publish):
    config_hook = make_hook("/config", events=["config.updated"])
    session_hook = make_hook("/session", events=["session.created"])
    everything = make_hook("/all", events=["*"])
    paused = make_hook("/paused", events=["*"])
    client.patch(f"/api/v1/hooks/{paused['id']}", json={"active": False}, headers=auth("write"))

    publish("config.updated", {"updated": [], "reload_required": False})
    publish("internal.detail", {"not": "for webhooks"})
    with connection():
        rows = [(d.hook_id, d.event) for d in HookDelivery.select()]
    assert sorted(rows) == sorted([(config_hook["id"], "config.updated"), (everything["id"], "config.updated")])
    assert session_hook["id"] not in dict(rows)


def test_5xx_is_retried_with_the_same_id_and_body(make_hook, publish, deliver, receiver, deliveries):
    hook = make_hook("/flaky")
    receiver.script("/flaky", 500, 503, 200)
    publish("session.created", {"id": "sess_1"})
    deliver(until=lambda: receiver.received("/flaky") and len(receiver.received("/flaky")) == 3
            and not outbox.has_due())

    requests = receiver.received("/flaky")
    assert len({r.webhook_id for r in requests}) == 1
    assert len({r.body for r in requests}) == 1
    for request in requests:
        request.verify(hook["secret"])
    (delivery,) = deliveries(hook["id"])
    assert delivery["status"] == "succeeded" and delivery["attempt_count"] == 3
    first, second, third = delivery["attempts"]
    assert [a["status_code"] for a in (first, second, third)] == [500, 503, 200]
    assert [a["outcome"] for a in (first, second, third)] == ["retrying", "retrying", "succeeded"]
    assert first["error"] == "receiver answered HTTP 500" and "scripted" in first["response"]
    # 0.2 s then 0.3 s, each ±20 %.
    delay = parse_iso(first["next_retry_at"]) - parse_iso(first["started_at"])
    assert timedelta(seconds=0.15) <= delay <= timedelta(seconds=0.3)
    assert parse_iso(second["started_at"]) >= parse_iso(first["next_retry_at"])
    assert third["next_retry_at"] is None


@pytest.mark.parametrize("status", [408, 429, 502])
def test_retryable_statuses(status, make_hook, publish, deliver, receiver):
    make_hook("/r")
    receiver.script("/r", status, 200)
    publish("session.created", {"id": "s"})
    deliver(until=lambda: len(receiver.received("/r")) == 2 and not outbox.has_due())
    assert len({r.webhook_id for r in receiver.received("/r")}) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 410, 301])
def test_other_statuses_fail_at_once(status, make_hook, publish, deliver, receiver, deliveries):
    hook = make_hook("/no")
    receiver.script("/no", status)
    publish("session.created", {"id": "s"})
    deliver()
    time.sleep(0.4)  # past the first retry delay: nothing more may be sent
    deliver()
    assert len(receiver.received("/no")) == 1
    (delivery,) = deliveries(hook["id"])
    assert delivery["status"] == "failed"
    assert delivery["attempts"][0]["outcome"] == "failed" and delivery["attempts"][0]["status_code"] == status


def test_retries_end_when_the_schedule_is_spent(make_hook, publish, deliver, receiver, deliveries):
    hook = make_hook("/down")
    receiver.default("/down", 500)
    publish("session.created", {"id": "s"})
    deliver(until=lambda: delivery_status(deliveries(hook["id"])[0]["id"]) == "failed")
    assert len(receiver.received("/down")) == 3  # the first attempt and two retries
    attempts = deliveries(hook["id"])[0]["attempts"]
    assert [a["outcome"] for a in attempts] == ["retrying", "retrying", "failed"]


def test_timeouts_are_retried(app_factory, auth, receiver, publish):
    app = app_factory({"hooks": {"allow_private_targets": True, "timeout_secs": 0.3, "retry_schedule": ["0.1s"]}})
    client = app.test_client()
    hook = client.post("/api/v1/hooks", json={"url": receiver.url + "/slow", "events": ["*"]},
                       headers=auth("write")).json
    receiver.script("/slow", 200, delay=1.0)
    receiver.script("/slow", 200)
    publish("session.created", {"id": "s"})
    pool = delivery_pool(app)
    deadline = time.monotonic() + 10
    while delivery_status_of(hook["id"]) != "succeeded" and time.monotonic() < deadline:
        pool.poll()
        pool.wait()
        time.sleep(0.05)
    with connection():
        attempts = list(HookAttempt.select().order_by(HookAttempt.number))
    assert [a.outcome for a in attempts] == ["retrying", "succeeded"]
    # The limit is what remained of the 0.3 s budget when the request went out.
    limit = re.fullmatch(r"timed out after ([\d.]+)s", attempts[0].error)
    assert limit and 0.2 < float(limit[1]) <= 0.3, attempts[0].error
    assert attempts[0].status_code is None
    assert attempts[0].duration_ms < 900


def delivery_status_of(hook_id: str) -> str | None:
    with connection():
        row = outbox.deliveries().where(HookDelivery.hook == hook_id).first()
    return row.status if row else None


def test_retry_after_is_honoured(make_hook, publish, deliver, receiver, deliveries):
    hook = make_hook("/busy")
    receiver.script("/busy", 429, headers={"Retry-After": "1"})
    publish("session.created", {"id": "s"})
    deliver()
    attempt = deliveries(hook["id"])[0]["attempts"][0]
    # The schedule says 0.2 s; the receiver asked for 1 s, capped at the longest scheduled wait (0.3 s).
    delay = parse_iso(attempt["next_retry_at"]) - parse_iso(attempt["started_at"])
    assert timedelta(seconds=0.29) <= delay <= timedelta(seconds=0.4)


def test_consecutive_failures_disable_the_hook_and_announce_it(app_factory, auth, receiver, publish):
    app = app_factory({"hooks": {"allow_private_targets": True, "retry_schedule": ["0.1s"],
                                 "disable_after_failures": 3}})
    client = app.test_client()
    register = lambda path, events: client.post(  # noqa: E731
        "/api/v1/hooks", json={"url": receiver.url + path, "events": events}, headers=auth("write")).json
    bad = register("/bad", ["session.created"])
    watcher = register("/watch", ["hook.disabled"])
    receiver.default("/bad", 500)
    for number in range(3):
        publish("session.created", {"id": f"s{number}"})
    pool = delivery_pool(app)
    deadline = time.monotonic() + 10
    while not receiver.received("/watch") and time.monotonic() < deadline:
        pool.poll()
        pool.wait()
        time.sleep(0.05)

    (announcement,) = receiver.received("/watch")
    event = announcement.verify(watcher["secret"])
    assert event["type"] == "hook.disabled"
    assert event["data"]["id"] == bad["id"] and event["data"]["active"] is False
    assert event["data"]["disabled_reason"] == "3 consecutive failed deliveries"
    assert event["data"]["consecutive_failures"] == 3
    assert bad["secret"] not in announcement.body.decode()

    state = client.get(f"/api/v1/hooks/{bad['id']}", headers=auth("read")).json
    assert state["active"] is False and state["disabled_reason"] == "3 consecutive failed deliveries"
    statuses = {d["status"] for d in client.get(f"/api/v1/hooks/{bad['id']}/deliveries",
                                                headers=auth("read")).json["deliveries"]}
    assert statuses <= {"failed", "cancelled"}
    assert len(receiver.received("/bad")) == 3

    # Disabled: new events are not queued for it; re-enabling clears the failure run.
    publish("session.created", {"id": "later"})
    with connection():
        assert HookDelivery.select().where(HookDelivery.hook == bad["id"]).count() == 3
    enabled = client.patch(f"/api/v1/hooks/{bad['id']}", json={"active": True}, headers=auth("write")).json
    assert enabled["active"] and enabled["consecutive_failures"] == 0 and enabled["disabled_reason"] is None


def test_a_success_ends_the_failure_run(make_hook, publish, deliver, receiver, client, auth):
    hook = make_hook("/mixed")
    receiver.script("/mixed", 500, 200)
    publish("session.created", {"id": "s"})
    deliver(until=lambda: len(receiver.received("/mixed")) >= 1)
    assert client.get(f"/api/v1/hooks/{hook['id']}", headers=auth("read")).json["consecutive_failures"] == 1
    deliver(until=lambda: len(receiver.received("/mixed")) == 2 and not outbox.has_due())
    assert client.get(f"/api/v1/hooks/{hook['id']}", headers=auth("read")).json["consecutive_failures"] == 0


def test_manual_retry_resends_with_the_same_id(make_hook, publish, deliver, receiver, client, auth, deliveries):
    hook = make_hook("/once")
    receiver.script("/once", 400)
    publish("session.created", {"id": "s"})
    deliver()
    (failed,) = deliveries(hook["id"])
    assert failed["status"] == "failed"

    response = client.post(f"/api/v1/hooks/{hook['id']}/deliveries/{failed['id']}/retry", headers=auth("write"))
    assert response.status_code == 202
    assert response.json["status"] == "pending" and response.json["id"] == failed["id"]
    deliver()
    first, second = receiver.received("/once")
    assert first.webhook_id == second.webhook_id == failed["id"] and first.body == second.body
    (done,) = deliveries(hook["id"])
    assert done["status"] == "succeeded"
    assert [a["number"] for a in done["attempts"]] == [1, 2]


def test_a_delivery_in_flight_cannot_be_retried(make_hook, publish, receiver, client, auth, pool, deliveries):
    hook = make_hook("/slow")
    receiver.script("/slow", 200, delay=0.6)
    publish("session.created", {"id": "s"})
    pool.poll()
    receiver.wait_count(1, path="/slow")
    (delivery,) = deliveries(hook["id"])
    response = client.post(f"/api/v1/hooks/{hook['id']}/deliveries/{delivery['id']}/retry", headers=auth("write"))
    assert response.status_code == 409
    pool.wait()
    assert deliveries(hook["id"])[0]["status"] == "succeeded"


def test_deactivating_cancels_waiting_deliveries(make_hook, publish, deliver, receiver, client, auth, deliveries):
    hook = make_hook("/later")
    receiver.default("/later", 503)
    publish("session.created", {"id": "s"})
    deliver()  # one failed attempt: now waiting for its retry
    assert deliveries(hook["id"])[0]["status"] == "pending"
    client.patch(f"/api/v1/hooks/{hook['id']}", json={"active": False}, headers=auth("write"))
    (delivery,) = deliveries(hook["id"])
    assert delivery["status"] == "cancelled" and delivery["next_attempt_at"] is None
    time.sleep(0.4)
    deliver()
    assert len(receiver.received("/later")) == 1


def test_deleting_a_hook_mid_delivery_is_harmless(make_hook, publish, receiver, client, auth, pool):
    hook = make_hook("/gone")
    receiver.script("/gone", 500, delay=0.5)
    publish("session.created", {"id": "s"})
    pool.poll()
    receiver.wait_count(1, path="/gone")
    assert client.delete(f"/api/v1/hooks/{hook['id']}", headers=auth("write")).status_code == 204
    pool.wait()
    with connection():
        assert HookDelivery.select().count() == 0 and HookAttempt.select().count() == 0


# ---- transactions side by side ---------------------------------------------------------


def test_an_event_published_while_its_hook_is_deleted_is_not_refused(make_hook, publish):
    hook = make_hook("/gone")

    def delete(ready):
        service.delete_hook(hook["id"])
        ready.set()
        time.sleep(0.5)  # the publisher below has read the hooks by now

    thread, errors = in_other_transaction(delete)
    publish("session.created", {"id": "s"})  # the deleted hook's delivery would fail its foreign key
    thread.join(10)
    assert errors == []
    with connection():
        assert HookDelivery.select().count() == 0 and Hook.select().count() == 0


def test_an_edit_keeps_a_disable_committed_after_it_read_the_hook(make_hook, client, auth, receiver, monkeypatch):
    hook = make_hook("/edited")
    find = service._find

    def failed_meanwhile(hook_id):
        row = find(hook_id)
        # As a failing delivery would commit it between the edit's read and its write.
        (Hook.update(active=False, consecutive_failures=5, disabled_reason="5 consecutive failed deliveries")
         .where(Hook.id == hook_id).execute())
        return row

    monkeypatch.setattr(service, "_find", failed_meanwhile)
    edited = client.patch(f"/api/v1/hooks/{hook['id']}", json={"url": receiver.url + "/new"}, headers=auth("write"))
    assert edited.status_code == 200
    assert (edited.json["url"], edited.json["active"], edited.json["consecutive_failures"]) == (
        receiver.url + "/new", False, 5)
    assert edited.json["disabled_reason"] == "5 consecutive failed deliveries"


def test_deactivating_while_a_failure_disables_the_hook_does_not_deadlock(make_hook, client, auth, monkeypatch):
    """The failure's transaction holds the hook's row and cancels its deliveries; the deactivation cancels
    them first and then writes the hook's row."""
    hook = make_hook("/failing")
    (waiting,) = queue(hook["id"], 1)
    cancel, failing = outbox.cancel_pending, {}

    def cancel_pending(hook_id):
        if threading.current_thread() is failing.get("thread"):
            failing["ready"].set()
            time.sleep(0.5)  # the deactivation below holds the waiting delivery's job by now
        return cancel(hook_id)

    monkeypatch.setattr(outbox, "cancel_pending", cancel_pending)

    def fail(ready):
        failing.update(thread=threading.current_thread(), ready=ready)
        assert not outbox.count_failure(jobs.Claim(KIND, "job", hook["id"], {}, 1, 0, "token", 30.0, utcnow()), 1)

    thread, errors = in_other_transaction(fail)
    deactivated = client.patch(f"/api/v1/hooks/{hook['id']}", json={"active": False}, headers=auth("write"))
    thread.join(10)
    assert errors == [] and deactivated.status_code == 200, deactivated.json
    assert delivery_status(waiting) == "cancelled"


def test_dns_rebinding_is_refused_at_delivery(app_factory, auth, receiver, publish, fake_dns, deliveries):
    app = app_factory({"hooks": {"allow_private_targets": False}})
    client = app.test_client()
    fake_dns({"rebind.example.test": ["93.184.215.14"]})
    response = client.post("/api/v1/hooks", json={
        "url": f"http://rebind.example.test:{receiver.port}/x", "events": ["*"]}, headers=auth("write"))
    assert response.status_code == 201
    hook = response.json
    fake_dns({"rebind.example.test": ["127.0.0.1"]})  # the attacker's DNS now points inside
    publish("session.created", {"id": "s"})
    pool = delivery_pool(app)
    pool.poll()
    pool.wait()
    assert receiver.received() == []
    (delivery,) = deliveries(hook["id"])
    assert delivery["status"] == "failed"
    assert delivery["attempts"][0]["error"] == (
        "target refused: rebind.example.test resolves to a loopback address (127.0.0.1)")


def test_private_targets_are_refused_at_delivery_once_disallowed(make_hook, publish, app_factory, receiver):
    hook = make_hook("/p")
    strict = app_factory({"hooks": {"allow_private_targets": False}})
    publish("session.created", {"id": "s"})
    pool = delivery_pool(strict)
    pool.poll()
    pool.wait()
    assert receiver.received() == []
    with connection():
        (attempt,) = HookAttempt.select()
        assert attempt.outcome == "failed" and "loopback" in attempt.error
        assert Hook.get_by_id(hook["id"]).consecutive_failures == 1


def test_deliveries_are_listed_newest_first_with_filters(make_hook, publish, deliver, receiver, deliveries):
    hook = make_hook("/list")
    receiver.script("/list", 400)
    publish("session.created", {"n": 1})
    deliver()  # alone, so that it is the one that meets the scripted 400
    publish("config.updated", {"n": 2})
    publish("session.idle", {"n": 3})
    deliver()
    listed = deliveries(hook["id"])
    assert [d["event"] for d in listed] == ["session.idle", "config.updated", "session.created"]
    assert [d["event"] for d in deliveries(hook["id"], status="failed")] == ["session.created"]
    assert [d["event"] for d in deliveries(hook["id"], event="config.updated")] == ["config.updated"]
    assert len(deliveries(hook["id"], limit=2)) == 2


# ---- claiming ---------------------------------------------------------------------


def queue(hook_id: str, count: int, when: datetime | None = None) -> list[str]:
    with connection(), transaction():
        queued = [outbox.enqueue_for(hook_id, "session.created", {"n": n}) for n in range(count)]
        if when is not None:
            Job.update(next_run_at=when).where(Job.id.in_([d.job_id for d in queued])).execute()
    return [d.id for d in queued]


def claim(limit=100, per_hook=100, ttl=30.0, owner="test"):
    with connection():
        return jobs.claim(KIND, limit, per_hook, ttl, owner)


def delivery_of(claimed: jobs.Claim) -> str:
    return claimed.payload["delivery"]


def test_claims_never_overlap(make_hook):
    import threading

    hook = make_hook()
    queued = queue(hook["id"], 40)
    results, barrier, lock = [], threading.Barrier(4), threading.Lock()

    def worker():
        barrier.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            got = [delivery_of(c) for c in claim(limit=3, owner=threading.current_thread().name)]
            with lock:
                results.extend(got)
                if len(results) >= 40:
                    return

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == len(set(results)) == 40
    assert set(results) == set(queued)
    assert claim() == []


def test_future_rows_wait_and_expired_claims_are_taken_again(make_hook, app):
    hook = make_hook()
    later = queue(hook["id"], 1, when=utcnow() + timedelta(seconds=60))
    (now_id,) = queue(hook["id"], 1)
    (first,) = claim(ttl=0.3, owner="dead-worker")
    assert delivery_of(first) == now_id and first.attempt == 1
    assert claim() == []  # held, and the other row is not due
    time.sleep(0.4)
    (second,) = claim(owner="survivor")
    assert delivery_of(second) == now_id and second.token != first.token
    # The dead worker's late result does not move the row: only the current holder's does.
    late = jobs.Outcome("succeeded", detail=outbox.Attempt(utcnow(), 5, status_code=200))
    with connection():
        assert jobs.record(first, late, app.extensions["lockgate"]) is None
        row = outbox.find(now_id)
        assert row.status == "pending" and row.job.claim_token == second.token
        assert outbox.find(later[0]).job.claim_token is None


def test_each_hook_gets_a_share_of_the_slots(make_hook):
    busy, quiet = make_hook("/busy"), make_hook("/quiet")
    queue(busy["id"], 10)
    queue(quiet["id"], 2)
    claims = claim(limit=5, per_hook=3)
    by_hook = {hook_id: sum(1 for c in claims if c.partition == hook_id) for hook_id in (busy["id"], quiet["id"])}
    assert by_hook == {busy["id"]: 3, quiet["id"]: 2}
    assert claim(limit=5, per_hook=3) == []  # the busy hook has 3 in flight already
    (returned, *_) = [c for c in claims if c.partition == busy["id"]]
    with connection():
        jobs.release(returned)
    assert [c.partition for c in claim(limit=5, per_hook=3)] == [busy["id"]]


def test_a_slow_receiver_does_not_hold_up_other_hooks(app_factory, auth, receiver, publish):
    app = app_factory({"hooks": {"allow_private_targets": True, "max_in_flight_per_hook": 2,
                                 "max_concurrency": 4}})
    client = app.test_client()
    for path, events in (("/slow", ["session.created"]), ("/fast", ["session.idle"])):
        client.post("/api/v1/hooks", json={"url": receiver.url + path, "events": events}, headers=auth("write"))
    receiver.default("/slow", 200, delay=1.0)
    for n in range(6):
        publish("session.created", {"n": n})
    publish("session.idle", {"n": 0})
    pool = delivery_pool(app)
    started = time.monotonic()
    pool.poll()
    receiver.wait_count(1, path="/fast", timeout=0.8)
    assert time.monotonic() - started < 0.8
    assert len(receiver.received("/slow")) <= 2
    pool.wait()


def test_an_attempt_never_starts_on_a_nearly_expired_claim(make_hook, settings, receiver):
    from app.hooks.delivery import attempt

    hook = make_hook()
    queue(hook["id"], 1)
    (held,) = claim(ttl=0.5)
    assert attempt(held, settings, "test") is None
    assert receiver.received() == []
    with connection():
        jobs.release(held)
    assert len(claim()) == 1


def test_retention_removes_old_finished_deliveries(make_hook):
    hook = make_hook()
    old, recent, waiting = queue(hook["id"], 3)
    with connection():
        long_ago = utcnow() - timedelta(days=30)
        job_of = {d.id: d.job_id for d in HookDelivery.select()}
        Job.update(state="succeeded", finished_at=long_ago).where(Job.id == job_of[old]).execute()
        Job.update(state="failed", finished_at=utcnow()).where(Job.id == job_of[recent]).execute()
        HookAttempt.create(delivery=old, number=1, started_at=long_ago, duration_ms=1, outcome="succeeded")
        assert outbox.sweep(utcnow() - timedelta(days=7)) == 1
        assert sorted(d.id for d in HookDelivery.select()) == sorted([recent, waiting])
        assert HookAttempt.select().count() == 0
        assert Job.select().count() == 2


# ---- schedule ---------------------------------------------------------------------


def test_retry_schedule_entries_are_durations():
    from app.hooks.delivery import parse_schedule

    assert parse_schedule(["0.2s", "500ms", "2m", "1h"]) == [0.2, 0.5, 120.0, 3600.0]
    assert parse_schedule([]) == []


def test_retry_delays_have_jitter_and_run_out():
    schedule = [10.0, 100.0]
    delays = {round(jobs.retry_delay(schedule, 1, None), 3) for _ in range(50)}
    assert len(delays) > 1 and all(8.0 <= d <= 12.0 for d in delays)
    assert all(80.0 <= jobs.retry_delay(schedule, 2, None) <= 120.0 for _ in range(20))
    assert jobs.retry_delay(schedule, 3, None) is None
    assert jobs.retry_delay([], 1, None) is None
    assert jobs.retry_delay(schedule, 1, 50.0) == 50.0
    assert jobs.retry_delay(schedule, 1, 10_000.0) == 100.0


def test_bodies_are_compact_json_with_type_timestamp_and_data():
    body = outbox.webhook_body("config.updated", {"at": datetime(2026, 1, 2, 3, 4, 5)}, datetime(2026, 1, 2))
    assert json.loads(body) == {"type": "config.updated", "timestamp": "2026-01-02T00:00:00.000Z",
                                "data": {"at": "2026-01-02 03:04:05"}}
