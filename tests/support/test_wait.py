"""The shared wait helper: the value it returns and the failure it reports."""

import time

import pytest

from tests.support.wait import wait_until


def test_returns_the_first_truthy_value():
    calls = []

    def third_time():
        calls.append(1)
        return len(calls) >= 3 and {"calls": len(calls)}

    assert wait_until(third_time, timeout=5, interval=0.01) == {"calls": 3}


def test_fails_at_the_deadline_with_the_message_of_that_moment():
    state = {"seen": 0}

    def never():
        state["seen"] += 1
        return False

    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"^workers \(seen \d+ times\) not reached within 0.2s$"):
        wait_until(never, timeout=0.2, interval=0.01, message=lambda: f"workers (seen {state['seen']} times)")
    assert 0.2 <= time.monotonic() - started < 2
    assert state["seen"] > 2
