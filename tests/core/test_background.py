"""A process that hosts one app after another keeps none of the earlier app's background work."""

import logging

from app.core import background
from app.core import logging as core_logging
from app.core.db import connection
from app.core.models import LogEntry
from app.core.tailer import Tailer


def test_reset_stops_every_loop_and_forgets_the_shutdown():
    ticks = []
    task = background.spawn_loop("counting", lambda: 0.01, lambda: ticks.append(1))
    assert background.reset() == []
    assert not task.is_alive()
    assert not background.stopping()  # the next app starts its loops as usual
    again = background.spawn_loop("counting-again", lambda: 0.01, lambda: None)
    assert not again.stopping
    assert background.reset() == []


def test_a_tailer_starts_its_loop_again_after_a_reset(app):
    tailer = Tailer(LogEntry, interval=0.05)
    seen = []
    tailer.subscribe(seen.extend)
    first = tailer._task
    background.reset()
    assert not first.is_alive()
    tailer.subscribe(seen.extend)
    assert tailer._task is not first and tailer._task.is_alive()


def test_log_records_of_an_earlier_app_do_not_reach_the_next_database(app_factory):
    app = app_factory()
    core_logging.install("info")
    logging.getLogger("auth").info("written while the first app ran")
    background.reset()
    core_logging.uninstall()
    assert not any(isinstance(h, core_logging.DatabaseHandler) for h in logging.getLogger().handlers)
    logging.getLogger("auth").info("after the first app ended")
    core_logging.flush()
    with app.app_context(), connection():
        messages = [row.message for row in LogEntry.select()]
    assert messages == ["written while the first app ran"]  # stored by the flush at stop, nothing after


def test_a_database_outage_is_one_line_when_it_begins_and_one_when_it_ends(caplog):
    from app.core.db import DatabaseUnavailable
    from tests.support.wait import wait_until

    outcomes = [DatabaseUnavailable("database unavailable: gone")] * 3 + [None, ValueError("a bug")]
    steps = []

    def step():
        outcome = outcomes[len(steps)] if len(steps) < len(outcomes) else None
        steps.append(outcome)
        if outcome is not None:
            raise outcome

    with caplog.at_level(logging.INFO, logger="core::background"):
        background.spawn_loop("flaky", lambda: 0.01, step)
        wait_until(lambda: len(steps) > len(outcomes), 5, 0.01, "the loop passing every outcome")
        background.reset()
    records = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records
               if r.name == "core::background"]
    assert records == [
        ("WARNING", "background task flaky: database unavailable (database unavailable: gone); retrying", False),
        ("INFO", "background task flaky: the database answers again", False),
        ("ERROR", "background task flaky failed", True),  # anything else keeps its traceback
    ]
