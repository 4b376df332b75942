"""Sessions: creating, listing, reading and ending them, their transcripts, and their counts.

Every status change happens in one transaction with the matching change to
``session_tally`` (so list totals never scan the table) and with its event on
the bus (``session.created``, ``session.idle``, ``session.terminated``).
Payloads are the session as ``GET /api/v1/sessions/:id`` shows it; a
termination adds ``reason`` (``"deleted"`` or ``"timeout"``).

Within a transaction, rows are changed in one order everywhere (session rows,
then tally rows in sorted order, then the event, whose PostgreSQL advisory
lock comes last), so concurrent transactions cannot deadlock.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from datetime import datetime

from peewee import EXCLUDED, fn

from app.agent.memory import open_memory
from app.core import events, jsonbody
from app.core.db import prepared, transaction, utcnow
from app.core.errors import BadRequest, Conflict, NotFound
from app.sessions.models import ACTIVE, IDLE, TERMINATED, AgentSession, SessionMessage, SessionTally
from app.sessions.schemas import MessageSchema, SessionSchema

_SESSION = SessionSchema()
_MESSAGE = MessageSchema()

log = logging.getLogger("session")

BUILTIN_CHANNELS = ("api",)
# How the log tells of a session the sweeper moved to a status.
SWEPT_TO = {IDLE: "became idle (no activity)", TERMINATED: "terminated (timeout)"}
# The sweeper changes at most this many sessions per transaction.
SWEEP_BATCH = 500


def new_session_id() -> str:
    return f"sess_{secrets.token_hex(12)}"


def new_message_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


# ---- views ---------------------------------------------------------------------


def session_view(row: AgentSession) -> dict:
    """A session as ``GET /api/v1/sessions/:id`` and its events show it."""
    return _SESSION.dump(row)


def message_view(row: SessionMessage) -> dict:
    """A message as the transcript, the reply and its events show it."""
    return _MESSAGE.dump(row)


# ---- channels ------------------------------------------------------------------


def known_channels(settings) -> list[str]:
    """``api`` always; every ``[channels_config.<name>]`` table names another."""
    configured = settings.get("channels_config") or {}
    return [*BUILTIN_CHANNELS, *sorted(name for name in configured if name not in BUILTIN_CHANNELS)]


# ---- tallies -------------------------------------------------------------------


def adjust_tallies(changes: Counter) -> None:
    """Apply ``{(status, channel): delta}`` inside the caller's transaction."""
    for (status, channel), delta in sorted(changes.items()):
        if delta == 0:
            continue
        (SessionTally
         .insert(status=status, channel=channel, count=delta)
         .on_conflict(conflict_target=[SessionTally.status, SessionTally.channel],
                      update={SessionTally.count: SessionTally.count + EXCLUDED.count})
         .execute())


# Counted on every list and status request.
_status_total = prepared(lambda: SessionTally.select(fn.SUM(SessionTally.count)).where(SessionTally.status == ""))
_channel_total = prepared(lambda: SessionTally.select(fn.SUM(SessionTally.count))
                          .where((SessionTally.status == "") & (SessionTally.channel == "")))


def count_sessions(status: str, channel: str | None = None) -> int:
    cursor = _status_total(status) if channel is None else _channel_total(status, channel)
    return int(cursor.fetchone()[0] or 0)


def recount_tallies() -> None:
    """Rebuild the tallies from the sessions (after rows were written directly, with nothing else writing)."""
    with transaction():
        SessionTally.delete().execute()
        counts = (AgentSession
                  .select(AgentSession.status, AgentSession.channel, fn.COUNT(AgentSession.id).alias("n"))
                  .group_by(AgentSession.status, AgentSession.channel)
                  .tuples())
        rows = [{"status": status, "channel": channel, "count": n} for status, channel, n in counts]
        if rows:
            SessionTally.insert_many(rows).execute()


# ---- sessions ------------------------------------------------------------------


def create_session(settings, channel: str, user_id: str | None, metadata: dict) -> dict:
    channels = known_channels(settings)
    if channel not in channels:
        raise BadRequest("Unknown channel", details={"channel": [f"expected one of: {', '.join(channels)}"]})
    now = utcnow()
    with transaction():
        row = AgentSession.create(
            id=new_session_id(), channel=channel, user_id=user_id, status=ACTIVE,
            created_at=now, last_activity=now, metadata=jsonbody.dumps(metadata, separators=(",", ":")),
        )
        adjust_tallies(Counter({(ACTIVE, channel): 1}))
        events.publish("session.created", session_view(row))
    log.info("session %s created on channel %s", row.id, channel)
    return row


def list_sessions(status: str, channel: str | None, limit: int, offset: int) -> tuple[list[AgentSession], int]:
    """Newest first; the page comes straight off the (status[, channel], created_at) index."""
    fields = (AgentSession.id, AgentSession.channel, AgentSession.user_id, AgentSession.status,
              AgentSession.created_at, AgentSession.last_activity)
    query = AgentSession.select(*fields).where(AgentSession.status == status)
    if channel is not None:
        query = query.where(AgentSession.channel == channel)
    page = query.order_by(AgentSession.created_at.desc(), AgentSession.id.desc()).limit(limit).offset(offset)
    return list(page), count_sessions(status, channel)


def find_session(session_id: str) -> AgentSession:
    row = AgentSession.get_or_none(AgentSession.id == session_id)
    if row is None:
        raise NotFound(f"Session {session_id[:80]} not found")
    return row


def terminate_session(session_id: str) -> None:
    """DELETE: the session ends (its transcript stays readable)."""
    with transaction():
        row = transition(session_id, (ACTIVE, IDLE), TERMINATED)
        if row is None:
            find_session(session_id)
            raise Conflict(f"Session {session_id} is already terminated")
        events.publish("session.terminated", {**session_view(row), "reason": "deleted"})
    log.info("session %s terminated (deleted)", session_id)


def transition(session_id: str, sources: tuple[str, ...], target: str) -> AgentSession | None:
    """Move one session from any of ``sources`` to ``target``; the updated row, or None.

    One conditional UPDATE per source status: the row that matched tells which
    tally to decrement, with no window between reading a status and changing it.
    """
    for source in sources:
        rows = list(
            AgentSession.update(status=target)
            .where((AgentSession.id == session_id) & (AgentSession.status == source))
            .returning(AgentSession)
            .execute()
        )
        if rows:
            row = rows[0]
            adjust_tallies(Counter({(source, row.channel): -1, (target, row.channel): 1}))
            return row
    return None


# ---- transcripts ---------------------------------------------------------------


def list_messages(session_id: str, limit: int, offset: int) -> tuple[list[SessionMessage], int]:
    """Oldest first; ``total`` is the session's message count."""
    session = find_session(session_id)
    page = (SessionMessage.select()
            .where(SessionMessage.session == session_id)
            .order_by(SessionMessage.seq)
            .limit(limit).offset(offset))
    return list(page), session.message_count


# ---- time-based changes (the sweeper) -----------------------------------------


def idle_inactive(cutoff: datetime) -> int:
    """Active sessions without activity since ``cutoff`` become idle."""
    return _sweep(ACTIVE, IDLE, cutoff, "session.idle", {})


def terminate_inactive(cutoff: datetime) -> int:
    """Active or idle sessions without activity since ``cutoff`` are terminated."""
    return sum(_sweep(source, TERMINATED, cutoff, "session.terminated", {"reason": "timeout"})
               for source in (ACTIVE, IDLE))


def _sweep(source: str, target: str, cutoff: datetime, topic: str, extra: dict) -> int:
    changed = 0
    while True:
        with transaction():
            rows = _move_batch(source, target, cutoff)
            changes = Counter()
            for row in rows:
                changes[(source, row.channel)] -= 1
                changes[(target, row.channel)] += 1
            adjust_tallies(changes)
            for row in rows:
                events.publish(topic, {**session_view(row), **extra})
        for row in rows:
            log.info("session %s %s", row.id, SWEPT_TO[target])
        changed += len(rows)
        if len(rows) < SWEEP_BATCH:
            return changed


def _move_batch(source: str, target: str, cutoff: datetime) -> list[AgentSession]:
    stale = (AgentSession.status == source) & (AgentSession.last_activity < cutoff)
    batch = AgentSession.select(AgentSession.id).where(stale).order_by(AgentSession.last_activity).limit(SWEEP_BATCH)
    # The condition is repeated outside the subquery: on PostgreSQL a message may
    # have touched the row between the two, and then it must stay as it is.
    return list(
        AgentSession.update(status=target)
        .where(stale & AgentSession.id.in_(batch))
        .returning(AgentSession)
        .execute()
    )


# ---- status --------------------------------------------------------------------


def status_counts(settings) -> dict:
    """This area's part of ``GET /api/v1/status``."""
    memory = open_memory(settings.get("memory.backend"))
    return {
        "active_sessions": count_sessions(ACTIVE),
        "memory": {"backend": memory.backend, "entries": memory.count()},
    }

