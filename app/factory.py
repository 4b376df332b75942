"""The application factory: settings, database, API, request pipeline, CLI."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from importlib import metadata

from flask import Flask, g, request

from app.core import errors, events, jsonbody, migrate, startup
from app.core.api import Api, api_config
from app.core.areas import areas
from app.core.db import is_postgres, release_connection
from app.core.direct import HANDED_OVER, DirectRoutes
from app.core.pipeline import Admission, Pipeline, answer_headers, log_access
from app.core.ratelimit import RateLimiter, make_counters
from app.core.settings import Settings, load_settings


def package_version() -> str:
    try:
        return metadata.version("lockgate")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


@dataclass
class Lockgate:
    """Per-process state every area reaches through ``current_app.extensions["lockgate"]``."""

    settings: Settings
    limiter: RateLimiter
    version: str
    started_at: float = field(default_factory=time.time)
    background_started: bool = False
    migrations_applied: list = field(default_factory=list)  # by this process's start-up, for ``db upgrade``
    settings_listeners: list = field(default_factory=list)

    def refresh_settings(self) -> None:
        if self.settings.refresh():
            for listener in self.settings_listeners:
                listener(self.settings)


class LockgateFlask(Flask):
    def ensure_sync(self, func):
        # No view or hook is a coroutine: skip the check Flask makes for every hook of every request.
        return func


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    app = LockgateFlask("lockgate")
    version = package_version()
    app.config.update(api_config(version))
    app.config["MAX_CONTENT_LENGTH"] = settings.get("gateway.max_body_bytes")
    app.json = jsonbody.JSONProvider(app)
    app.json.sort_keys = False

    startup.check_directories(settings)
    applied = migrate.open_database(settings)

    state = Lockgate(
        settings=settings,
        limiter=RateLimiter(make_counters(settings, is_postgres()), settings),
        version=version,
        migrations_applied=applied,
        started_at=float(os.environ.get("LOCKGATE_STARTED_AT") or time.time()),
    )
    state.settings_listeners.append(lambda s: app.config.update(MAX_CONTENT_LENGTH=s.get("gateway.max_body_bytes")))
    app.extensions["lockgate"] = state

    errors.register(app)
    api = Api(app)
    _register_areas(app, api)
    _install_request_pipeline(app, state)
    return app


def _register_areas(app: Flask, api: Api) -> None:
    from app.cli import core_groups

    for group in core_groups():
        app.cli.add_command(group)
    for area in areas():
        for blueprint in area.blueprints:
            api.register_blueprint(blueprint)
        for listener in area.on_publish:
            events.on_publish(listener)
        for group in area.cli:
            app.cli.add_command(group)


def _install_request_pipeline(app: Flask, state: Lockgate) -> None:
    pipeline = Pipeline(app, state, tuple(token for area in areas() for token in area.env_tokens))
    app.wsgi_app = DirectRoutes(app, pipeline, app.wsgi_app)

    @app.before_request
    def begin_request():
        # The request and g proxies are resolved once: every lookup through them costs.
        req, ctx = request._get_current_object(), g._get_current_object()
        handed_over = req.environ.pop(HANDED_OVER, None)
        admission, error = handed_over or (Admission(req.environ), None)
        ctx.admission = admission
        if handed_over is None:
            pipeline.admit(admission, req.environ, req.endpoint, req.blueprint, req.path)
        elif error is not None:
            raise error
        ctx.principal = admission.principal

    @app.after_request
    def finish_request(response):
        admission = g.get("admission")
        response.headers.update(answer_headers(admission))
        log_access(request.method, request.path, response.status_code, admission)
        return response

    @app.teardown_request
    def close_database(_exc):
        release_connection()


def start_background(app: Flask) -> None:
    """Per-worker work: log storage, then every area's background. Called once the worker is serving."""
    state: Lockgate = app.extensions["lockgate"]
    if state.background_started:
        return
    state.background_started = True
    from app.core import jobs, supervisor
    from app.core import logging as core_logging

    core_logging.install(state.settings.get("logs.level"))
    state.settings_listeners.append(lambda s: core_logging.set_level(s.get("logs.level")))
    jobs.start(state, [kind for area in areas() for kind in area.jobs])
    for area in areas():
        for start in area.background:
            start(state)
    supervisor.start(state)
