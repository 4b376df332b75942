"""gunicorn settings for Lockgate: gevent workers, bind from ``[gateway]``.

The master process reads the configuration only (no Flask, no peewee): gevent
patches each worker before the application is imported there.
"""

import os
import sys
import time

from app.core.settings import ConfigError, load_settings
from app.core.startup import StartupError, check_service_start

try:
    _settings = load_settings()
except ConfigError as exc:
    print(f"lockgate: configuration error: {exc}", file=sys.stderr)
    sys.exit(2)
# Before any worker forks: a data directory that cannot be written, or a database
# lost since the last run, stops the service here with one line.
try:
    check_service_start(_settings)
except StartupError as exc:
    print(f"lockgate: {exc}", file=sys.stderr)
    sys.exit(1)

bind = f"{_settings.get('gateway.host')}:{_settings.get('gateway.port')}"
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY") or _settings.get("gateway.workers") or max(2, os.cpu_count() or 1))
# Open SSE streams each hold a connection: leave room for thousands.
worker_connections = 10000
# Thousands of dashboards reconnect at once after a restart: connections wait in the
# listen queue until a worker accepts them, and the kernel resets those beyond it. The
# kernel caps this at net.core.somaxconn (4096 on current Linux; see docs/operations.md).
backlog = 4096
timeout = 30
graceful_timeout = 15
keepalive = 5
# Request line and header sizes: nginx (large_client_header_buffers 4 8000 in
# docs/operations.md) refuses anything bigger first, in Lockgate's JSON envelope;
# these are a little above it so that whatever nginx forwards gunicorn accepts,
# and they still bound a client talking to gunicorn directly.
limit_request_line = 8190  # gunicorn's maximum; its default (4094) is below nginx's
limit_request_fields = 100  # far above any real client; nginx does not count header fields
limit_request_field_size = 8190
accesslog = None
errorlog = "-"
loglevel = "info"
proc_name = "lockgate"
# A fixed control socket path would collide between instances on one machine.
control_socket_disable = True


def on_starting(server):
    # Inherited by every worker: uptime is the service's, not one worker's.
    os.environ.setdefault("LOCKGATE_STARTED_AT", str(time.time()))


def post_worker_init(worker):
    from app.core import lifecycle
    from app.factory import start_background

    start_background(worker.wsgi)
    lifecycle.watch_worker(worker)


def post_request(worker, req, environ, resp):
    # gevent does not switch greenlets while a read finds data waiting, so one
    # busy keep-alive connection could monopolise a worker: yield after each request.
    import gevent

    gevent.sleep(0)


def worker_int(worker):
    # Ctrl-C (SIGINT, then the master's SIGQUIT): gunicorn calls this in a greenlet that
    # next raises SystemExit, which gevent prints as a traceback when the main greenlet has
    # already finished. The worker is marked not alive, so the main greenlet stops it
    # cleanly by itself: this greenlet just never returns.
    from gevent.event import Event

    worker.alive = False
    Event().wait()


def worker_exit(server, worker):
    from app.core import background

    background.stop()
