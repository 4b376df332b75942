"""Work off the hub: results, timeouts, memory and CPU limits, errors, and a hub that keeps serving meanwhile."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.core import offhub

ROOT = Path(__file__).resolve().parents[2]


# Run in the child interpreter: module-level, so that they pickle by name.
def add(a, b, scale=1):
    return (a + b) * scale


def allocate(megabytes: int) -> int:
    return len(bytearray(megabytes * 1024 * 1024))


def spin() -> None:
    while True:
        pass


def fail(message: str) -> None:
    raise ValueError(message)


def noisy() -> int:
    print("chatter on stdout")
    return 7


def exit_hard() -> None:
    os._exit(3)


def test_a_subprocess_returns_the_functions_result():
    assert offhub.in_subprocess(add, 2, 3, scale=10, timeout=20) == 50
    assert offhub.in_subprocess(noisy, timeout=20) == 7  # what it prints does not corrupt the answer


def test_a_subprocess_past_its_timeout_is_killed():
    started = time.monotonic()
    with pytest.raises(offhub.TimedOut, match="within 0.5s"):
        offhub.in_subprocess(time.sleep, 30, timeout=0.5)
    assert time.monotonic() - started < 3


def test_a_subprocess_over_its_memory_limit_fails_cleanly():
    with pytest.raises(offhub.OutOfMemory):
        offhub.in_subprocess(allocate, 512, timeout=20, memory_mb=64)
    assert offhub.in_subprocess(allocate, 16, timeout=20, memory_mb=64) == 16 * 1024 * 1024


def test_a_subprocess_over_its_cpu_limit_is_stopped():
    started = time.monotonic()
    with pytest.raises(offhub.TimedOut, match="CPU"):
        offhub.in_subprocess(spin, timeout=20, cpu_secs=1)
    assert time.monotonic() - started < 10


def test_errors_in_the_child_come_back_with_their_message():
    with pytest.raises(offhub.Crashed, match="ValueError: bad input") as raised:
        offhub.in_subprocess(fail, "bad input", timeout=20)
    assert (raised.value.kind, raised.value.detail) == ("ValueError", "bad input")
    with pytest.raises(offhub.Crashed, match="status 3"):
        offhub.in_subprocess(exit_hard, timeout=20)


def test_a_thread_returns_times_out_and_reports_errors():
    assert offhub.in_thread(add, 1, 2, timeout=5) == 3
    with pytest.raises(offhub.TimedOut):
        offhub.in_thread(time.sleep, 2, timeout=0.2)
    with pytest.raises(offhub.Crashed, match="ValueError: no"):
        offhub.in_thread(fail, "no", timeout=5)


UNDER_GEVENT = """
from gevent import monkey
monkey.patch_all()

import json, time
import gevent
from app.core import offhub
from tests.core.test_offhub import add, spin

native_sleep = monkey.get_original("time", "sleep")
ticks = []

def ticker():
    while True:
        ticks.append(time.monotonic())
        gevent.sleep(0.01)

def counted(work):
    gevent.sleep(0.05)
    before = len(ticks)
    started = time.monotonic()
    try:
        value = work()
    except offhub.OffHubError as exc:
        value = type(exc).__name__
    return {"value": value, "ticks": len(ticks) - before, "secs": time.monotonic() - started}

gevent.spawn(ticker)
print(json.dumps({
    "subprocess": counted(lambda: offhub.in_subprocess(add, 1, 2, timeout=20)),
    "subprocess_timeout": counted(lambda: offhub.in_subprocess(spin, timeout=1.0)),
    "thread": counted(lambda: offhub.in_thread(native_sleep, 1.0, timeout=5)),
    "thread_timeout": counted(lambda: offhub.in_thread(native_sleep, 3.0, timeout=0.5)),
}))
"""


def test_the_hub_keeps_serving_other_greenlets_meanwhile():
    done = subprocess.run([sys.executable, "-c", UNDER_GEVENT], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["subprocess"]["value"] == 3
    assert report["subprocess_timeout"]["value"] == "TimedOut"
    assert report["thread"]["value"] is None
    assert report["thread_timeout"]["value"] == "TimedOut"
    for name, run in report.items():
        # A ticker wanting 100 ticks a second got at least a third of them while the work ran.
        assert run["ticks"] >= run["secs"] * 100 / 3, (name, run)
    assert report["subprocess_timeout"]["secs"] >= 0.9 and report["thread"]["secs"] >= 0.9
