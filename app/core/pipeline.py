"""What every request goes through, whichever path serves it: admission, answer headers, access log.

Admission is the request id, the token, the rate limit, the scope and the URL
check, in that order. Flask's hooks (``app.factory``) and the direct routes
(``app.core.direct``) both run it from the WSGI environ, so a request is
counted, refused and logged the same way on either path.
"""

from __future__ import annotations

import logging
import os
import re
import time

from app.core import jsonbody
from app.core.api import route_policy
from app.core.auth import Principal, authenticate, unauthorized
from app.core.clientip import client_address
from app.core.errors import Forbidden, RateLimited

access_log = logging.getLogger("http")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class Admission:
    """One request's standing: filled in step by step, so an error midway still has its request id."""

    __slots__ = ("started", "request_id", "principal", "rate_limit")

    def __init__(self, environ):
        self.started = time.perf_counter()
        supplied = environ.get("HTTP_X_REQUEST_ID", "")
        self.request_id = supplied if REQUEST_ID.match(supplied) else os.urandom(16).hex()
        self.principal: Principal | None = None
        self.rate_limit = None  # the limiter's decision, once counted


class Pipeline:
    def __init__(self, app, state, env_tokens):
        self.app = app
        self.state = state
        self.env_tokens = env_tokens

    def admit(self, admission: Admission, environ, endpoint: str | None, blueprint: str | None, path: str) -> None:
        """Fill in ``admission``; raise the refusal (401, 403, 429, 400) if the request may not go on."""
        self.state.refresh_settings()
        authorization = environ.get("HTTP_AUTHORIZATION")
        principal = admission.principal = authenticate(authorization, env_tokens=self.env_tokens)
        method = environ["REQUEST_METHOD"]
        policy = route_policy(self.app, endpoint, path, method)
        admission.rate_limit = self._count(environ, principal, policy.rate_group)
        _authorise(blueprint, principal, policy.scope, authorization)
        jsonbody.check_url(environ)

    def _count(self, environ, principal: Principal | None, group: str):
        if principal is not None:
            identity = f"token:{principal.token_id}"
        else:
            trusted = self.state.settings.get("gateway.trusted_proxies") or []
            identity = "ip:" + client_address(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"), trusted)
        decision = self.state.limiter.hit(group, identity)
        if decision is not None and not decision.allowed:
            raise RateLimited(
                f"Rate limit of {decision.limit} requests exceeded; retry in {decision.retry_after}s",
                details={"limit": decision.limit, "retry_after": decision.retry_after},
                headers=decision.headers(),
            )
        return decision


def answer_headers(admission: Admission | None) -> dict[str, str]:
    """The headers every answer carries: the rate limit's, when it was counted, and the request id."""
    if admission is None:
        return {"X-Request-ID": ""}
    headers = admission.rate_limit.headers() if admission.rate_limit is not None else {}
    headers["X-Request-ID"] = admission.request_id
    return headers


def log_access(method: str, path: str, status: int, admission: Admission | None) -> None:
    # Successes at debug (stored only when [logs] level asks for them); refusals
    # at info, as they matter for security; server errors at warn.
    level = logging.DEBUG if status < 400 else logging.INFO if status < 500 else logging.WARNING
    if access_log.isEnabledFor(level):
        started = admission.started if admission is not None else time.perf_counter()
        access_log.log(level, "%s %s %d %.1fms (request %s)", method, path, status,
                       (time.perf_counter() - started) * 1000, admission.request_id if admission else None)


def _authorise(blueprint: str | None, principal: Principal | None, scope: str | None,
               authorization: str | None) -> None:
    # No scope: a public route, the docs, or an unknown route or method (its 404/405 comes next).
    if scope is None:
        return
    if principal is None:
        raise unauthorized(authorization)
    refusal = principal.refusal(scope, blueprint)
    if refusal is not None:
        raise Forbidden(refusal, details={"required_scope": scope})
