"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app`` and ``flask --app wsgi``.

gevent must patch the standard library before anything else is imported, so
that peewee's connection state and every socket are greenlet-aware.
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from app import create_app  # noqa: E402
from app.core.settings import ConfigError  # noqa: E402
from app.core.startup import StartupError  # noqa: E402

# gunicorn's master stops when a worker exits with 3 (it could not boot) instead of respawning it.
WORKER_BOOT_ERROR = 3

try:
    app = create_app()
except ConfigError as exc:
    print(f"lockgate: configuration error: {exc}", file=sys.stderr)
    sys.exit(2)
except StartupError as exc:
    print(f"lockgate: {exc}", file=sys.stderr)
    sys.exit(WORKER_BOOT_ERROR)
