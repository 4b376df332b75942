"""The event bus's append: written as the last statement of the publishing transaction."""

import json
import threading

import pytest

from app.core import events
from app.core.db import before_commit, connection, database, transaction
from app.core.models import Event


def _topics():
    return [row.topic for row in Event.select().order_by(Event.id)]


def test_events_are_appended_at_commit_in_publish_order(app):
    with connection():
        with transaction():
            events.publish("test.first", {"n": 1})
            events.publish("test.second", {"n": 2})
            # Not written yet: the rows go in just before COMMIT.
            assert _topics() == []
        assert _topics() == ["test.first", "test.second"]
        assert json.loads(Event.get(Event.topic == "test.first").payload) == {"n": 1}


def test_a_rolled_back_transaction_publishes_nothing(app):
    with connection():
        with pytest.raises(RuntimeError), transaction():
            events.publish("test.lost", {})
            raise RuntimeError("rolled back")
        with transaction():
            events.publish("test.kept", {})
        assert _topics() == ["test.kept"]


def test_nested_transactions_append_once_at_the_outermost_commit(app):
    with connection():
        with transaction():
            with transaction():
                events.publish("test.inner", {})
            assert _topics() == []
        assert _topics() == ["test.inner"]


def test_publish_outside_a_transaction_opens_its_own(app):
    with connection():
        events.publish("test.alone", {})
        assert _topics() == ["test.alone"]


def test_before_commit_needs_a_transaction(app):
    with connection(), pytest.raises(RuntimeError):
        before_commit(lambda: None)


def test_concurrent_publishers_commit_ids_in_order(app):
    """Each id is visible only once every smaller id is: what the tailer's "id > last" relies on."""
    seen_gaps = []
    stop = threading.Event()

    def publisher():
        with connection():
            while not stop.is_set():
                with transaction():
                    events.publish("test.race", {})

    def watcher():
        with connection():
            while not stop.is_set():
                ids = [row.id for row in Event.select(Event.id).order_by(Event.id)]
                if ids and ids != list(range(ids[0], ids[0] + len(ids))):
                    seen_gaps.append(ids)
            database.close()

    threads = [threading.Thread(target=publisher) for _ in range(4)] + [threading.Thread(target=watcher)]
    for thread in threads:
        thread.start()
    threading.Event().wait(1.5)
    stop.set()
    for thread in threads:
        thread.join()
    with connection():
        assert Event.select().count() > 10
    assert seen_gaps == []
