"""Lockgate: a self-hosted control plane for AI agents.

This module stays import-light on purpose: gunicorn's master process reads
settings through ``app.core.settings`` and must not import peewee or Flask
before gevent patches the worker.
"""


def create_app(settings=None):
    from app.factory import create_app as _create_app

    return _create_app(settings)
