"""``offhub.in_thread``'s tick: the waiting caller runs a clock while the function works in its thread."""

import threading
import time

import pytest

from app.core import offhub


def test_tick_runs_while_the_function_works_and_stops_after():
    ticks = []
    stop = threading.Event()

    def work():
        stop.wait(0.3)
        return "finished"

    assert offhub.in_thread(work, timeout=5, tick=lambda: ticks.append(time.monotonic()), tick_secs=0.01) == "finished"
    count = len(ticks)
    assert 10 <= count <= 40
    time.sleep(0.05)
    assert len(ticks) == count


def test_the_tick_can_end_the_work():
    released = threading.Event()

    def work():
        released.wait(5)
        return released.is_set()

    assert offhub.in_thread(work, timeout=5, tick=released.set, tick_secs=0.01) is True


def test_the_timeout_holds_with_a_tick():
    began = time.monotonic()
    with pytest.raises(offhub.TimedOut):
        offhub.in_thread(time.sleep, 1.0, timeout=0.2, tick=lambda: None, tick_secs=0.05)
    assert time.monotonic() - began < 0.6
