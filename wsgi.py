"""WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app`` and ``flask --app wsgi``.

gevent must patch the standard library before anything else is imported, so
that peewee's connection state and every socket are greenlet-aware.
"""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from app import create_app  # noqa: E402
from app.core.settings import ConfigError  # noqa: E402

try:
    app = create_app()
except ConfigError as exc:
    print(f"lockgate: configuration error: {exc}", file=sys.stderr)
    sys.exit(2)
