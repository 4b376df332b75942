"""The baseline of bench_status.py: bare Flask, one route returning JSON.

Served by gunicorn with bench/gunicorn_bare.conf.py, which copies the
project's gunicorn settings (gevent worker class, workers, worker_connections,
keepalive, timeouts) but none of Lockgate's worker hooks.
"""

from gevent import monkey

monkey.patch_all()

from flask import Flask, jsonify  # noqa: E402

app = Flask("bare")


@app.get("/health")
def health():
    return jsonify(healthy=True)
