"""Background loops of a worker: started after fork, stopped on graceful shutdown.

Threads here become greenlets once gevent has patched the process (every
served worker and every CLI command goes through ``wsgi.py``); under plain
pytest they are real threads, which the code is equally correct for.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("core::background")

_stopping = threading.Event()
_stop_callbacks = []


def spawn_loop(name: str, interval, step) -> threading.Thread:
    """Run ``step()`` every ``interval()`` seconds until shutdown; errors are logged, never fatal."""

    def run():
        while not _stopping.is_set():
            try:
                step()
            except Exception:
                log.exception("background task %s failed", name)
            _stopping.wait(interval())

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def on_stop(callback) -> None:
    _stop_callbacks.append(callback)


def stopping() -> bool:
    return _stopping.is_set()


def stop() -> None:
    """Begin a graceful shutdown: loops end and streams say goodbye."""
    if _stopping.is_set():
        return
    _stopping.set()
    for callback in list(_stop_callbacks):
        try:
            callback()
        except Exception:
            log.exception("shutdown callback failed")


def reset_for_tests() -> None:
    _stopping.clear()
    _stop_callbacks.clear()
