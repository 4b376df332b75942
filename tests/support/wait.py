"""Waiting for a condition another process brings about: one deadline rule for every test and benchmark."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05,
               message: str | Callable[[], str] = "condition") -> T:
    """Call ``predicate`` until it returns something truthy and return that value.

    At the deadline it raises AssertionError naming ``message``; a callable message is
    evaluated only then, so it can describe the state at the failure (a server's log).
    The predicate is always tried once more after the deadline, so a slow last try counts.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} not reached within {timeout}s")
        time.sleep(interval)
