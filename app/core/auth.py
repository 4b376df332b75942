"""Bearer tokens: created by the CLI, stored only as hashes, checked per request.

A token reads ``lgt_<id>_<secret>``. The id finds the row; the SHA-256 of
the whole token is compared in constant time. Tokens carry 256 bits of
randomness, so a fast hash is enough: there is nothing to brute-force.
The ``Authorization`` scheme is matched without regard to case (RFC 7235),
and a refusal says whether a token was sent (RFC 6750's ``invalid_token``).

Some APIs are also reached with a token their deployments set in the
environment (Symbiont's ``API_AUTH_TOKEN``). An ``EnvToken`` declares such a
variable, the scope it grants and the blueprints it is valid on; it is
compared in constant time and grants nothing anywhere else.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.core.db import iso, prepared_read, utcnow
from app.core.errors import Unauthorized
from app.core.models import ApiToken

log = logging.getLogger("auth")

SCOPES = ("read", "write", "review", "admin")
# What each scope grants: itself and the scopes it implies. ``review`` (deciding on tool reviews) is not part
# of ``write``: a token that can submit a tool must not be able to approve it.
SCOPE_GRANTS = {
    "read": frozenset({"read"}),
    "write": frozenset({"read", "write"}),
    "review": frozenset({"read", "review"}),
    "admin": frozenset(SCOPES),
}
TOKEN_PATTERN = re.compile(r"^lgt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class Principal:
    token_id: str
    name: str
    scopes: tuple[str, ...]
    blueprints: frozenset[str] | None = None  # None: valid on every route

    def allows(self, scope: str, blueprint: str | None = None) -> bool:
        return self.refusal(scope, blueprint) is None

    def refusal(self, scope: str, blueprint: str | None = None) -> str | None:
        """Why this principal may not call a route of ``blueprint`` needing ``scope``; None when it may."""
        if self.blueprints is not None and blueprint not in self.blueprints:
            return f"This token is not valid here (only on: {', '.join(sorted(self.blueprints))})"
        if any(scope in SCOPE_GRANTS.get(held, ()) for held in self.scopes):
            return None
        return f"This endpoint needs the '{scope}' scope"


@dataclass(frozen=True)
class EnvToken:
    """A bearer token an operator sets in an environment variable, valid on some blueprints only."""

    variable: str
    scope: str
    blueprints: frozenset[str]

    def __post_init__(self):
        if self.scope not in SCOPES:
            raise ValueError(self.scope)
        object.__setattr__(self, "blueprints", frozenset(self.blueprints))

    def principal(self, token: str, environ: Mapping[str, str]) -> Principal | None:
        expected = environ.get(self.variable, "")
        # An unset or empty variable accepts nothing.
        if not expected or not hmac.compare_digest(expected.encode(), token.encode()):
            return None
        return Principal(f"env:{self.variable}", self.variable, (self.scope,), self.blueprints)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(name: str, scopes: list[str], expires_in: timedelta | None = None) -> tuple[ApiToken, str]:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes must be among {', '.join(SCOPES)}")
    token_id = secrets.token_hex(8)
    token = f"lgt_{token_id}_{secrets.token_urlsafe(32)}"
    now = utcnow()
    row = ApiToken.create(
        id=token_id,
        name=name,
        token_hash=_hash(token),
        scopes=" ".join(dict.fromkeys(scopes)),
        created_at=now,
        expires_at=now + expires_in if expires_in else None,
    )
    log.info("token %s created (%s; scopes: %s; expires: %s)", token_id, name, row.scopes,
             iso(row.expires_at) or "never")
    return row, token


def bearer_token(header: str | None) -> str | None:
    """The credentials of a ``Bearer`` header, whatever the case of the scheme; None for no or another scheme."""
    scheme, _, credentials = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def unauthorized(header: str | None) -> Unauthorized:
    """The 401 for a request that gave no valid principal."""
    if bearer_token(header) is None:
        return Unauthorized()
    return Unauthorized("The bearer token is not valid: unknown, expired or revoked", token_sent=True)


def authenticate(header: str | None, now: datetime | None = None, env_tokens: Sequence[EnvToken] = (),
                 environ: Mapping[str, str] | None = None) -> Principal | None:
    """The principal of an ``Authorization: Bearer`` header, or None if it is not valid.

    A stored token is looked for first, then each of ``env_tokens`` (their
    variables read from ``environ``, by default the process environment).
    """
    token = bearer_token(header)
    if token is None:
        return None
    principal = _stored_principal(token, now)
    if principal is None:
        environ = os.environ if environ is None else environ
        principal = next((found for found in (each.principal(token, environ) for each in env_tokens) if found), None)
    return principal


def _stored_principal(token: str, now: datetime | None) -> Principal | None:
    match = TOKEN_PATTERN.match(token)
    if not match:
        return None
    row = _find(match[1])
    if row is None or not hmac.compare_digest(row["token_hash"], _hash(token)):
        return None
    now = now or utcnow()
    if row["revoked_at"] is not None or (row["expires_at"] is not None and row["expires_at"] <= now):
        return None
    return Principal(match[1], row["name"], tuple(row["scopes"].split()))


_LOOKUP_FIELDS = (ApiToken.token_hash, ApiToken.name, ApiToken.scopes, ApiToken.expires_at, ApiToken.revoked_at)


# Every request looks its token up.
_lookup = prepared_read(lambda: ApiToken.select(*_LOOKUP_FIELDS).where(ApiToken.id == ""))


def _find(token_id: str) -> dict | None:
    rows = _lookup(token_id)
    if not rows:
        return None
    return {field.name: field.python_value(value) for field, value in zip(_LOOKUP_FIELDS, rows[0], strict=True)}


def revoke(token_id: str) -> bool:
    revoked = bool(
        ApiToken.update(revoked_at=utcnow())
        .where((ApiToken.id == token_id) & ApiToken.revoked_at.is_null())
        .execute()
    )
    if revoked:
        log.info("token %s revoked", token_id)
    return revoked


def list_tokens() -> list[ApiToken]:
    return list(ApiToken.select().order_by(ApiToken.created_at))
