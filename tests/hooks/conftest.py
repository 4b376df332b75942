import socket
import time

import pytest

from app.core.db import connection
from tests.hooks.receiver import Receiver

# Receivers in these tests listen on loopback, which the default policy refuses.
HOOKS_CONFIG = {
    "hooks": {
        "allow_private_targets": True,
        "retry_schedule": ["0.2s", "0.3s"],
        "timeout_secs": 2.0,
        "disable_after_failures": 5,
    }
}


@pytest.fixture
def app(app_factory):
    return app_factory(HOOKS_CONFIG)


@pytest.fixture
def receiver():
    with Receiver() as instance:
        yield instance


@pytest.fixture
def settings(app):
    return app.extensions["lockgate"].settings


def delivery_pool(app):
    """A job pool running webhook deliveries for ``app``, driven by the test (nothing polls on its own)."""
    from app.core.jobs import Pool
    from app.hooks.delivery import KIND

    return Pool(app.extensions["lockgate"], [KIND])


@pytest.fixture
def pool(app):
    return delivery_pool(app)


@pytest.fixture
def deliver(pool):
    """Run the pool in the test: poll and send until ``until()`` holds, or until nothing is due."""
    from app.hooks import outbox

    def run(until=None, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while True:
            pool.poll()
            pool.wait(timeout)
            with connection():
                done = until() if until is not None else not outbox.has_due()
            if done:
                return
            if time.monotonic() > deadline:
                raise AssertionError("deliveries did not reach the expected state in time")
            time.sleep(0.02)

    return run


@pytest.fixture
def make_hook(client, auth, receiver):
    """Register a hook on the receiver at ``path``; returns the 201 body (with its secret)."""

    def make(path: str = "/hook", events=("*",), **extra):
        body = {"url": receiver.url + path, "events": list(events), **extra}
        response = client.post("/api/v1/hooks", json=body, headers=auth("write"))
        assert response.status_code == 201, response.json
        return response.json

    return make


@pytest.fixture
def publish(app):
    """Publish an event as another area would (inside its own transaction)."""
    from app.core import events

    def run(topic: str, payload: dict):
        with connection():
            return events.publish(topic, payload)

    return run


@pytest.fixture
def deliveries(client, auth):
    def get(hook_id: str, **params):
        response = client.get(f"/api/v1/hooks/{hook_id}/deliveries", query_string=params, headers=auth("read"))
        assert response.status_code == 200, response.json
        return response.json["deliveries"]

    return get


@pytest.fixture
def fake_dns(monkeypatch):
    """``fake_dns({"name": ["address", ...]})``: those names resolve as given (changeable later)."""
    from app.hooks import targets

    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                     (address, port)) for address in answers[host]]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(targets.socket, "getaddrinfo", getaddrinfo)

    def set_answers(mapping: dict):
        answers.update(mapping)

    return set_answers
