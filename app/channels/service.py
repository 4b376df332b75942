"""Channels: what every worker answers about them, and the live state their connections record.

A channel's connection runs in one worker (its supervised unit); that worker
alone writes the channel's ``channel_state`` row (each write names it as
owner), so every worker reads the same status, error, latency and activity.
Health is judged from that row: a channel is healthy when connected and its
platform showed a sign of life within three times its usual cadence.
"""

from __future__ import annotations

import hmac
import logging
import time
from datetime import UTC, datetime, timedelta

from marshmallow import ValidationError
from peewee import IntegrityError

from app.channels import config as channel_config
from app.channels.connectors import ChannelError, Inbound, connector_for
from app.channels.models import (
    CONNECTED,
    CONNECTING,
    DISABLED,
    DISCONNECTED,
    RECONNECTING,
    ChannelMessage,
    ChannelState,
)
from app.core import events, jsonbody, supervisor
from app.core.db import connection, iso, transaction, utcnow
from app.core.errors import BadRequest, Conflict, Forbidden, NotFound, ServiceUnavailable, Unauthorized
from app.core.models import Lease, UnitState
from app.hooks import signing, targets
from app.sessions.models import ACTIVE, AgentSession
from app.sessions.service import count_sessions

log = logging.getLogger("channel")

STALL_FACTOR = 3  # no sign of life for this many cadences: stalled
PROBE_TIMEOUT_SECS = 5.0


def unit_name(channel: str) -> str:
    return f"channel:{channel}"


# ---- reading ---------------------------------------------------------------------


def names(settings) -> list[str]:
    """``api`` first, then every configured channel by name."""
    return [channel_config.BUILTIN, *sorted(channel_config.configured(settings))]


def list_channels(state) -> list[dict]:
    settings = state.settings
    tables = channel_config.configured(settings)
    rows = {row.name: row for row in ChannelState.select().where(ChannelState.name.in_(list(tables) or [""]))}
    leases = _live_owners([unit_name(name) for name in tables])
    restarts = _restarts([unit_name(name) for name in tables])
    sessions = _active_sessions([channel_config.BUILTIN, *tables])
    channels = [{"name": channel_config.BUILTIN, "type": "api", "status": CONNECTED,
                 "connected_at": datetime.fromtimestamp(state.started_at, UTC).replace(tzinfo=None),
                 "active_sessions": sessions.get(channel_config.BUILTIN, 0), "error": None, "restarts": 0}]
    for name in sorted(tables):
        view = _view(name, tables[name], rows.get(name), leases.get(unit_name(name)))
        view.update(active_sessions=sessions.get(name, 0), restarts=restarts.get(unit_name(name), 0))
        channels.append(view)
    return channels


def _view(name: str, table, row: ChannelState | None, lease_owner: str | None) -> dict:
    view = {"name": name, "type": channel_config.channel_type(name, table), "connected_at": None, "error": None}
    try:
        parsed = channel_config.parse(name, table)
    except channel_config.InvalidChannelConfig as exc:
        return {**view, "status": DISCONNECTED, "error": f"Invalid configuration: {exc}"}
    if not parsed.enabled:
        return {**view, "status": DISABLED}
    if row is None:
        return {**view, "status": CONNECTING}
    if row.owner and lease_owner != row.owner and row.status != DISABLED:
        # The worker that held the connection is gone; another takes it over within the lease's expiry.
        return {**view, "status": RECONNECTING,
                "error": "the worker holding the connection stopped; another worker is taking it over"}
    view["status"] = row.status
    if row.status == CONNECTED:
        view["connected_at"] = row.connected_at
    else:
        view["error"] = row.error
    return view


def _live_owners(lease_names: list[str]) -> dict[str, str]:
    if not lease_names:
        return {}
    now = utcnow()
    query = Lease.select(Lease.name, Lease.owner).where(Lease.name.in_([f"unit:{n}" for n in lease_names])
                                                        & (Lease.expires_at >= now))
    return {name[len("unit:"):]: owner for name, owner in query.tuples()}


def _restarts(units: list[str]) -> dict[str, int]:
    if not units:
        return {}
    return dict(UnitState.select(UnitState.name, UnitState.restarts).where(UnitState.id.in_(units)).tuples())


def _active_sessions(names: list[str]) -> dict[str, int]:
    """Active sessions per channel, from the sessions' tallies (no scan of the sessions)."""
    return {name: count_sessions(ACTIVE, name) for name in names}


def channel_table(settings, name: str):
    tables = channel_config.configured(settings)
    if name not in tables:
        raise NotFound(f"No channel named {name[:64]!r}", details={"channels": names(settings)})
    return tables[name]


def health(state, name: str) -> dict:
    """``healthy``, the measured ``latency_ms`` (a fresh round trip when the platform offers one) and activity."""
    settings = state.settings
    if name == channel_config.BUILTIN:
        return {"name": name, "healthy": True, "latency_ms": 0, "last_message_at": _last_api_message()}
    table = channel_table(settings, name)
    row = ChannelState.get_or_none(ChannelState.name == name)
    view = _view(name, table, row, _live_owners([unit_name(name)]).get(unit_name(name)))
    if view["status"] == CONNECTED and _measure_now(name, table):
        row = ChannelState.get_or_none(ChannelState.name == name)
    latency = None if row is None or row.latency_ms is None else round(row.latency_ms)
    body = {"name": name, "healthy": view["status"] == CONNECTED and not stalled(row),
            "latency_ms": latency, "last_message_at": row.last_message_at if row else None}
    if not body["healthy"]:
        body["reason"] = view["error"] or ("stalled: no sign of life from the platform"
                                           if view["status"] == CONNECTED else view["status"])
    return body


def stalled(row: ChannelState | None, now: datetime | None = None) -> bool:
    if row is None or not row.cadence_secs:
        return False
    last = row.last_activity_at or row.connected_at
    if last is None:
        return False
    return (now or utcnow()) - last > timedelta(seconds=STALL_FACTOR * row.cadence_secs)


def _measure_now(name: str, table) -> bool:
    """A round trip from this worker, when the platform has one to offer (Discord's is the heartbeat's)."""
    try:
        connector = connector_for(channel_config.parse(name, table))
    except (channel_config.InvalidChannelConfig, ChannelError):
        return False
    probe = getattr(connector, "probe", None)
    if probe is None:
        return False
    try:
        latency = probe(timeout=PROBE_TIMEOUT_SECS)
    except ChannelError as exc:
        log.info("channel %s: health probe failed: %s", name, exc.reason)
        return False
    record_latency(name, latency, owner=None)
    return True


def _last_api_message():
    """When an open API session last saw activity (newest first off the (status, last_activity) index)."""
    return (AgentSession.select(AgentSession.last_activity)
            .where((AgentSession.status == ACTIVE) & (AgentSession.channel == channel_config.BUILTIN))
            .order_by(AgentSession.last_activity.desc()).limit(1).scalar())


def status_counts(settings) -> dict:
    """This area's part of ``GET /api/v1/status``: channels connected (``api`` included) out of all."""
    tables = channel_config.configured(settings)
    rows = {row.name: row for row in ChannelState.select().where(ChannelState.name.in_(list(tables) or [""]))}
    leases = _live_owners([unit_name(name) for name in tables])
    connected = 1 + sum(_view(name, table, rows.get(name), leases.get(unit_name(name)))["status"] == CONNECTED
                        for name, table in tables.items())
    return {"channels": {"connected": connected, "total": 1 + len(tables)}}


# ---- commands --------------------------------------------------------------------


def restart(state, name: str) -> dict:
    """The owning worker drops and re-opens the connection; every worker answers ``reconnecting`` at once."""
    from app.channels.connection import declare_missing

    if name == channel_config.BUILTIN:
        raise Conflict("The api channel is the HTTP API itself: it has no connection to restart")
    channel_table(state.settings, name)
    declare_missing(state, name)  # a table added a moment ago may not have reached this worker's units yet
    with transaction():
        ChannelState.update(status=RECONNECTING, since=utcnow()).where(ChannelState.name == name).execute()
        supervisor.request("restart", unit_name(name))
    log.info("channel %s: restart requested", name)
    return {"name": name, "status": RECONNECTING}


# ---- live state, written by the worker holding the connection ---------------------


def cursor(name: str) -> str | None:
    with connection():
        row = ChannelState.get_or_none(ChannelState.name == name)
    return row.cursor if row else None


def record_attempt(name: str, owner: str, first: bool) -> str:
    """A connection attempt begins; ``reconnecting`` unless it is this worker's first (or a restart's)."""
    now = utcnow()
    with connection(), transaction():
        row = ChannelState.get_or_none(ChannelState.name == name)
        status = CONNECTING if first and (row is None or row.status != RECONNECTING) else RECONNECTING
        if row is None:
            ChannelState.insert(name=name, status=status, owner=owner, since=now).on_conflict_ignore().execute()
        else:
            ChannelState.update(status=status, owner=owner, since=now).where(ChannelState.name == name).execute()
    return status


def record_connected(ctx, name: str, cadence_secs: float | None) -> None:
    now = utcnow()
    with connection(), transaction():
        if not ctx.confirm():
            return
        ChannelState.update(status=CONNECTED, owner=ctx.lease.owner, since=now, connected_at=now, error=None,
                            failures=0, last_activity_at=now, cadence_secs=cadence_secs).where(
            ChannelState.name == name).execute()
        events.publish("channel.connected", {"name": name, "connected_at": iso(now)})


def record_failure(ctx, name: str, status: str, error: str, failures: int, was_connected: bool) -> None:
    now = utcnow()
    with connection(), transaction():
        if not ctx.confirm():
            return
        changes = {ChannelState.status: status, ChannelState.since: now, ChannelState.error: error[:2000],
                   ChannelState.failures: failures}
        if was_connected:
            changes[ChannelState.reconnects] = ChannelState.reconnects + 1
        ChannelState.update(changes).where(ChannelState.name == name).execute()
        if was_connected:
            events.publish("channel.disconnected", {"name": name, "status": status, "error": error, "at": iso(now)})


def record_status(name: str, owner: str, status: str, error: str | None = None) -> None:
    with connection():
        (ChannelState.update(status=status, since=utcnow(), error=error, connected_at=None)
         .where((ChannelState.name == name) & (ChannelState.owner == owner)).execute())


def record_activity(name: str, owner: str) -> None:
    with connection():
        (ChannelState.update(last_activity_at=utcnow())
         .where((ChannelState.name == name) & (ChannelState.owner == owner)).execute())


def record_latency(name: str, latency_ms: float, owner: str | None) -> None:
    """A measured round trip. Not a sign of life of the connection itself: a probe may be its own request."""
    where = ChannelState.name == name
    if owner is not None:
        where &= ChannelState.owner == owner
    with connection():
        ChannelState.update(latency_ms=latency_ms, latency_at=utcnow()).where(where).execute()


def raise_for_config(name: str, table) -> channel_config.ChannelConfig:
    """The parsed configuration, or a permanent ``ChannelError`` saying what is wrong with it."""
    try:
        return channel_config.parse(name, table)
    except channel_config.InvalidChannelConfig as exc:
        raise ChannelError(f"Invalid configuration: {exc}", permanent=True) from None


# ---- webhook channels --------------------------------------------------------------

SIGNATURE_TOLERANCE_SECS = 300  # Standard Webhooks: reject timestamps more than five minutes off


def receive_webhook(state, name: str, headers, raw: bytes) -> tuple[dict, int]:
    """A signed message posted to a webhook channel: answered in the response, or later to its ``reply_url``."""
    from app.channels import dispatch
    from app.channels.schemas import WebhookMessageSchema

    settings = state.settings
    config = _webhook_config(settings, name)
    message_id = verify_signature(config.get("secret"), headers, raw)
    data = _load(WebhookMessageSchema(), raw)
    if data.get("reply_url"):
        _check_reply_url(settings, data["reply_url"])
    if not config.allows(data["user_id"]):
        log_for_type(config).info("channel %s: message from user %s ignored: not in allowed_users",
                                  name, data["user_id"])
        raise Forbidden(f"User {data['user_id'][:64]} may not talk on channel {name}")
    inbound = Inbound(external_id=message_id, chat_id=data.get("chat_id") or data["user_id"],
                      user_id=data["user_id"], content=data["content"])
    try:
        with transaction():
            rows = dispatch.accept(config, [inbound], None, data.get("reply_url"), enqueue=bool(data.get("reply_url")))
    except IntegrityError:
        rows = []  # the same message posted twice at once: the other request stored it
    if not rows:
        existing = ChannelMessage.get((ChannelMessage.channel == name) & (ChannelMessage.external_id == message_id))
        return _replayed(existing), 200
    row = rows[0]
    if row.reply_url:
        return {"message_id": message_id, "status": "accepted", "reply": None}, 202
    reply = dispatch.answer_now(state, row)
    return {"message_id": message_id, "status": "answered", "session_id": reply["session_id"],
            "reply": reply["content"]}, 200


def _webhook_config(settings, name: str):
    table = channel_table(settings, name)
    try:
        config = channel_config.parse(name, table)
    except channel_config.InvalidChannelConfig as exc:
        raise ServiceUnavailable(f"Channel {name} is misconfigured: {exc}") from None
    if config.type != "webhook":
        raise NotFound(f"Channel {name} is a {config.type} channel: it does not take posted messages")
    if not config.enabled:
        raise Conflict(f"Channel {name} is disabled")
    try:
        signing.decode_secret(config.get("secret"))
    except ValueError as exc:
        raise ServiceUnavailable(f"Channel {name} is misconfigured: its secret {exc}") from None
    return config


def verify_signature(secret: str, headers, raw: bytes) -> str:
    """The message id of a correctly signed, recent message; 401 otherwise."""
    message_id, timestamp, sent = (headers.get("webhook-id"), headers.get("webhook-timestamp"),
                                   headers.get("webhook-signature"))
    if not (message_id and timestamp and sent):
        raise Unauthorized("Missing webhook-id, webhook-timestamp or webhook-signature header")
    if len(message_id) > 200:
        raise Unauthorized("webhook-id is too long")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Unauthorized("webhook-timestamp must be Unix seconds")
    if abs(time.time() - int(timestamp)) > SIGNATURE_TOLERANCE_SECS:
        raise Unauthorized("webhook-timestamp is too far from the current time")
    try:
        body = raw.decode("utf-8")
        expected = signing.signature(secret, message_id, int(timestamp), body)
    except (UnicodeDecodeError, ValueError):
        raise Unauthorized("The message cannot be verified") from None
    if not any(hmac.compare_digest(expected, candidate) for candidate in sent.split()):
        raise Unauthorized("Invalid webhook signature")
    return message_id


def _load(schema, raw: bytes) -> dict:
    try:
        document = jsonbody.loads(raw)
    except jsonbody.InvalidJson as exc:
        raise BadRequest("The body must be a JSON object", details={"body": [str(exc)]}) from None
    if not isinstance(document, dict):
        raise BadRequest("The body must be a JSON object")
    try:
        return schema.load(document)
    except ValidationError as exc:
        raise BadRequest("Invalid message", details=exc.messages) from None


def _check_reply_url(settings, url: str) -> None:
    try:
        targets.allowed_addresses(targets.parse(url), settings.get("hooks.allow_private_targets"))
    except (ValueError, targets.TargetRefused) as exc:
        raise BadRequest("Invalid reply_url", details={"reply_url": [str(exc)]}) from None
    except targets.TransportError as exc:
        raise BadRequest("Invalid reply_url", details={"reply_url": [str(exc)]}) from None


def _replayed(row: ChannelMessage) -> dict:
    """A message id seen before (a sender's retry): what became of the first one."""
    status = "answered" if row.reply is not None else "accepted"
    return {"message_id": row.external_id, "status": status, "session_id": row.session_id, "reply": row.reply}


def log_for_type(config) -> logging.Logger:
    return logging.getLogger(f"channel::{config.type}")
