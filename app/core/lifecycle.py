"""Hooks between gunicorn's worker life cycle and the application."""

from __future__ import annotations

from app.core import background


def watch_worker(worker) -> None:
    """End streams and background work when the worker begins a graceful stop.

    gunicorn's gevent worker marks itself not alive on SIGTERM, then waits for
    open requests; open SSE streams must notice and finish for it to exit cleanly.
    """
    background.spawn_loop("watch-worker", lambda: 0.2, lambda: _stop_when_quitting(worker))


def _stop_when_quitting(worker) -> None:
    if not worker.alive:
        background.stop()
