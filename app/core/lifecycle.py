"""Hooks between gunicorn's worker life cycle and the application."""

from __future__ import annotations

from app.core import background


def worker_started(worker) -> None:
    """Start the worker's background loops, and end streams when it begins a graceful stop.

    gunicorn's gevent worker marks itself not alive on SIGTERM, then waits for
    open requests; open SSE streams must notice and finish for it to exit cleanly.
    """
    from app.factory import start_background

    start_background(worker.wsgi)
    background.spawn_loop("watch-worker", lambda: 0.2, lambda: _stop_when_quitting(worker))


def _stop_when_quitting(worker) -> None:
    if not worker.alive:
        background.stop()
