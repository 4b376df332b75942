"""Background work of a worker: started after fork, stopped on graceful shutdown.

Threads here become greenlets once gevent has patched the process (every
served worker and every CLI command goes through ``wsgi.py``); under plain
pytest they are real threads, which the code is equally correct for.

Each task has its own stop signal, so one loop can be stopped (and another
started in its place) without stopping the worker; ``stop()`` signals all.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("core::background")

_stopping = threading.Event()
_stop_callbacks = []
_tasks: set[Task] = set()
_tasks_guard = threading.Lock()


class Task:
    """A named thread (greenlet) running ``run(task)`` until it returns; ``task.wait`` doubles as its sleep."""

    def __init__(self, name: str, run):
        self.name = name
        self._run = run
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as the task is asked to stop."""
        return self._stop.wait(max(seconds, 0))

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """True when the task has ended."""
        if self.thread is not threading.current_thread():
            self.thread.join(timeout)
        return not self.thread.is_alive()

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def _main(self) -> None:
        try:
            self._run(self)
        except Exception:
            log.exception("background task %s failed", self.name)
        finally:
            with _tasks_guard:
                _tasks.discard(self)


def spawn(name: str, run) -> Task:
    """Start ``run(task)`` in its own thread; stopped already when the worker is shutting down."""
    task = Task(name, run)
    with _tasks_guard:
        _tasks.add(task)
        if _stopping.is_set():
            task.stop()
    task.thread.start()
    return task


def spawn_loop(name: str, interval, step) -> Task:
    """Run ``step()`` every ``interval()`` seconds until stopped; errors are logged, never fatal."""

    def run(task: Task):
        outage = False
        while not task.stopping:
            try:
                step()
            except Exception as exc:
                outage = _report_failure(name, exc, outage)
            else:
                if outage:
                    log.info("background task %s: the database answers again", name)
                outage = False
            task.wait(interval())

    return spawn(name, run)


def _report_failure(name: str, exc: Exception, outage: bool) -> bool:
    """Log a failed step; whether the database is out. An outage is one line when it begins, not a
    traceback every interval: the 503s and the status already say so."""
    from app.core.db import unavailable_reason

    reason = unavailable_reason(exc)
    if reason is None:
        log.exception("background task %s failed", name)
        return False
    if not outage:
        log.warning("background task %s: %s; retrying", name, reason)
    return True


def on_stop(callback) -> None:
    _stop_callbacks.append(callback)


def stopping() -> bool:
    return _stopping.is_set()


def stop() -> None:
    """Begin a graceful shutdown: tasks are told to stop, then the stop callbacks run."""
    with _tasks_guard:
        if _stopping.is_set():
            return
        _stopping.set()
        tasks = list(_tasks)
    for task in tasks:
        task.stop()
    for callback in list(_stop_callbacks):
        try:
            callback()
        except Exception:
            log.exception("shutdown callback failed")


def reset(timeout: float = 5.0) -> list[str]:
    """Stop every task, wait for them, and forget the shutdown: the process is as if newly started.

    For a process that hosts one app after another (the test suite), so that
    no loop of an earlier app keeps working on whatever database comes next.
    Returns the names of tasks that did not end within ``timeout``.
    """
    stop()
    with _tasks_guard:
        tasks = list(_tasks)
    deadline = time.monotonic() + timeout
    stuck = [task.name for task in tasks if not task.join(max(0.0, deadline - time.monotonic()))]
    _stopping.clear()
    _stop_callbacks.clear()
    return stuck
