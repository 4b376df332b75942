"""The application factory: settings, database, API, request pipeline, CLI."""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from importlib import metadata

from flask import Flask, g, request

from app.core import errors, events, jsonbody, migrate, startup
from app.core.api import Api, api_config, route_policy
from app.core.areas import areas
from app.core.auth import Principal, authenticate, unauthorized
from app.core.clientip import client_address
from app.core.db import is_postgres, release_connection
from app.core.errors import Forbidden, RateLimited
from app.core.ratelimit import RateLimiter, make_counters
from app.core.settings import Settings, load_settings

access_log = logging.getLogger("http")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


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
    env_tokens = tuple(token for area in areas() for token in area.env_tokens)

    @app.before_request
    def begin_request():
        # The request and g proxies are resolved once: every lookup through them costs.
        req, ctx = request._get_current_object(), g._get_current_object()
        ctx.started = time.perf_counter()
        supplied = req.headers.get("X-Request-ID", "")
        ctx.request_id = supplied if REQUEST_ID.match(supplied) else os.urandom(16).hex()
        state.refresh_settings()
        authorization = req.headers.get("Authorization")
        principal = authenticate(authorization, env_tokens=env_tokens)
        ctx.principal = principal
        policy = route_policy(app, req.endpoint, req.path, req.method)
        ctx.rate_limit = _apply_rate_limit(state, req, principal, policy.rate_group)
        _authorise(req, principal, policy.scope, authorization)
        jsonbody.check_url(req)

    @app.after_request
    def finish_request(response):
        ctx = g._get_current_object()
        decision = getattr(ctx, "rate_limit", None)
        headers = response.headers
        if decision is not None:
            headers.update(decision.headers())
        headers["X-Request-ID"] = getattr(ctx, "request_id", "")
        _log_access(response)
        return response

    @app.teardown_request
    def close_database(_exc):
        release_connection()


def _log_access(response) -> None:
    # Successes at debug (stored only when [logs] level asks for them); refusals
    # at info, as they matter for security; server errors at warn.
    status = response.status_code
    level = logging.DEBUG if status < 400 else logging.INFO if status < 500 else logging.WARNING
    if access_log.isEnabledFor(level):
        elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        access_log.log(level, "%s %s %d %.1fms (request %s)", request.method, request.path, status,
                       elapsed, g.get("request_id"))


def _apply_rate_limit(state: Lockgate, req, principal: Principal | None, group: str):
    if principal is not None:
        identity = f"token:{principal.token_id}"
    else:
        trusted = state.settings.get("gateway.trusted_proxies") or []
        identity = "ip:" + client_address(req.remote_addr, req.headers.get("X-Forwarded-For"), trusted)
    decision = state.limiter.hit(group, identity)
    if decision is not None and not decision.allowed:
        raise RateLimited(
            f"Rate limit of {decision.limit} requests exceeded; retry in {decision.retry_after}s",
            details={"limit": decision.limit, "retry_after": decision.retry_after},
            headers=decision.headers(),
        )
    return decision


def _authorise(req, principal: Principal | None, scope: str | None, authorization: str | None) -> None:
    # No scope: a public route, the docs, or an unknown route or method (its 404/405 comes next).
    if scope is None:
        return
    if principal is None:
        raise unauthorized(authorization)
    refusal = principal.refusal(scope, req.blueprint)
    if refusal is not None:
        raise Forbidden(refusal, details={"required_scope": scope})


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
