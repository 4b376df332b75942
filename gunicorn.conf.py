"""gunicorn settings for Lockgate: gevent workers, bind from ``[gateway]``.

The master process reads the configuration only (no Flask, no peewee): gevent
patches each worker before the application is imported there.
"""

import os
import sys
import time

from app.core.settings import ConfigError, load_settings

try:
    _settings = load_settings()
except ConfigError as exc:
    print(f"lockgate: configuration error: {exc}", file=sys.stderr)
    sys.exit(2)

bind = f"{_settings.get('gateway.host')}:{_settings.get('gateway.port')}"
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY") or _settings.get("gateway.workers") or max(2, os.cpu_count() or 1))
# Open SSE streams each hold a connection: leave room for thousands.
worker_connections = 10000
timeout = 30
graceful_timeout = 15
keepalive = 5
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

    lifecycle.worker_started(worker)


def post_request(worker, req, environ, resp):
    # gevent does not switch greenlets while a read finds data waiting, so one
    # busy keep-alive connection could monopolise a worker: yield after each request.
    import gevent

    gevent.sleep(0)


def worker_exit(server, worker):
    from app.core import background

    background.stop()
