"""From a platform message to a session turn and back: the ``channels.turn`` job kind.

Messages are stored (``channel_message``) and a job enqueued in the same
transaction that moves the channel's cursor past them, so a message is taken
in exactly once and answered at least once, whichever worker runs the job.
Jobs are partitioned by chat, one in flight per chat, and the job that runs
answers every waiting message of its chat oldest first under the chat's
lease: one chat's messages are answered in order (a chat whose job has not
started yet gets no second one: that job answers the new message too). A reply that could not be
sent is stored with its message, so the retry sends it again instead of asking
the model twice.

Each (channel, chat, user) talks to one session (``channel_conversation``),
created on the first message with the channel's name and the platform's user
id, and replaced once it has ended or is full; ``/new`` starts a fresh one.
"""

from __future__ import annotations

import logging
import threading
import time

from app.channels import config as channel_config
from app.channels.connectors import ChannelError, Inbound, connector_for
from app.channels.models import ANSWERED, FAILED, PENDING, SENT, ChannelConversation, ChannelMessage, ChannelState
from app.core import events, jobs, jsonbody
from app.core.db import connection, is_postgres, iso, release_connection, transaction, utcnow
from app.core.errors import ApiError, Conflict
from app.core.leases import HeldLease
from app.core.models import Job
from app.hooks import signing, targets
from app.sessions import service as sessions
from app.sessions import turns
from app.sessions.lock import SessionBusy
from app.sessions.models import TERMINATED, AgentSession

log = logging.getLogger("channel")

KIND_NAME = "channels.turn"
NEW_SESSION = "/new"
NEW_SESSION_REPLY = "Started a new conversation."
SEND_RETRIES = (1.0, 5.0, 30.0, 120.0, 600.0)
REPLY_TIMEOUT_SECS = 10.0


def partition(channel: str, chat_id: str) -> str:
    return f"{channel}:{chat_id}"


# ---- taking messages in (inside the caller's transaction) ------------------------


def accept(config: channel_config.ChannelConfig, messages: list[Inbound], cursor: str | None,
           reply_url: str | None = None, enqueue: bool = True) -> list[ChannelMessage]:
    """Store the messages not seen before, queue their answers, move the cursor; the new rows."""
    now = utcnow()
    seen = set()
    if messages:
        seen = {external for (external,) in ChannelMessage.select(ChannelMessage.external_id).where(
            (ChannelMessage.channel == config.name)
            & ChannelMessage.external_id.in_([m.external_id for m in messages])).tuples()}
    rows = []
    for message in messages:
        if message.external_id in seen:
            continue
        seen.add(message.external_id)
        rows.append(ChannelMessage.create(
            channel=config.name, external_id=message.external_id, chat_id=message.chat_id,
            user_id=message.user_id, thread=message.thread, content=message.content, reply_url=reply_url,
            state=PENDING, received_at=now))
    if enqueue and rows:
        chats = [chat for chat in dict.fromkeys(row.chat_id for row in rows)
                 if not _job_waiting(partition(config.name, chat))]
        jobs.enqueue_batch(KIND_NAME, [(partition(config.name, chat), {"channel": config.name, "chat": chat})
                                       for chat in chats])
    changes = {}
    if cursor is not None:
        changes[ChannelState.cursor] = cursor
    if rows:
        changes[ChannelState.last_message_at] = now
    if changes:
        changes[ChannelState.last_activity_at] = now
        ChannelState.update(changes).where(ChannelState.name == config.name).execute()
    for row in rows:
        events.publish("channel.message.received", message_event(row))
    return rows


def _job_waiting(key: str) -> bool:
    """Whether a job of this chat is due and not started: it will answer this message too.

    On PostgreSQL the job's row stays locked until the caller commits, so no worker can start it
    (and find nothing to answer) before this message is there; on SQLite the caller's write
    transaction keeps every claim waiting anyway. A job running or waiting to retry does not count.
    """
    now = utcnow()
    query = (Job.select(Job.id)
             .where((Job.kind == KIND_NAME) & (Job.partition_key == key) & (Job.state == jobs.PENDING)
                    & (Job.next_run_at <= now) & (Job.claimed_until.is_null() | (Job.claimed_until < now)))
             .limit(1))
    if is_postgres():
        query = query.for_update(skip_locked=True)
    return query.first() is not None


def message_event(row: ChannelMessage) -> dict:
    return {"channel": row.channel, "message_id": row.external_id, "chat_id": row.chat_id, "user_id": row.user_id,
            "content": row.content, "received_at": iso(row.received_at)}


# ---- answering (the job) ---------------------------------------------------------


def limits(state) -> jobs.Limits:
    settings = state.settings
    return jobs.Limits(claim_secs=settings.get("channels.turn_claim_secs"), schedule=SEND_RETRIES,
                       concurrency=settings.get("channels.max_concurrent_turns"), per_partition=1, poll_secs=0.1)


def handle(claim: jobs.Claim, state) -> jobs.Outcome | None:
    """Answer every waiting message of the claim's chat, oldest first."""
    channel, chat = claim.payload["channel"], claim.payload["chat"]
    claim_secs = state.settings.get("channels.turn_claim_secs")
    lease = HeldLease(f"channel-chat:{partition(channel, chat)}", claim_secs)
    # Another job, or a webhook sender waiting for its answer, is answering this chat: it may take this
    # message too; if it is still busy after a while, the claim goes back and the job is taken again later.
    if not lease.acquire(wait=claim_secs / 3):
        return None
    try:
        while True:
            claim.check()
            with connection():
                row = _next_waiting(channel, chat)
            if row is None:
                return jobs.Outcome(jobs.SUCCEEDED)
            try:
                answer(state, row)
            except ChannelError as exc:
                return jobs.Outcome(jobs.RETRY, error=exc.reason, retry_after=exc.retry_after)
    finally:
        lease.release()


def _next_waiting(channel: str, chat: str) -> ChannelMessage | None:
    return (ChannelMessage.select()
            .where((ChannelMessage.channel == channel) & (ChannelMessage.chat_id == chat)
                   & ChannelMessage.state.in_([PENDING, ANSWERED]))
            .order_by(ChannelMessage.id).first())


def answer(state, row: ChannelMessage) -> str:
    """Run the turn for one stored message (unless its reply is stored already), then send the reply."""
    settings = state.settings
    config = _config(settings, row.channel)
    if config is None:
        row.error = "the channel is no longer configured"
        _save(row, FAILED)
        return ""
    connector = connector_for(config)
    if row.state == PENDING:
        row.reply, row.session_id, row.error = _turn(settings, config, connector, row)
        row.replied_at = utcnow()
    try:
        deliver(settings, config, connector, row)
    except ChannelError:
        _save(row, ANSWERED)  # kept: the retry sends this reply instead of asking the model again
        raise
    _save(row, SENT)
    return row.reply or ""


def _config(settings, name: str) -> channel_config.ChannelConfig | None:
    table = channel_config.configured(settings).get(name)
    try:
        return None if table is None else channel_config.parse(name, table)
    except channel_config.InvalidChannelConfig:
        return None


def _save(row: ChannelMessage, state: str) -> None:
    row.state = state
    with connection():
        (ChannelMessage.update(state=state, reply=row.reply, session_id=row.session_id, error=row.error,
                               replied_at=row.replied_at)
         .where(ChannelMessage.id == row.id).execute())


def _turn(settings, config, connector, row: ChannelMessage) -> tuple[str, str | None, str | None]:
    """(reply, session id, error or None): the agent's answer, or words for the user when there is none."""
    if row.content.strip() == NEW_SESSION:
        return NEW_SESSION_REPLY, fresh_session(settings, config, row.chat_id, row.user_id), None
    typing = _Typing(connector, row.chat_id)
    typing.start()
    try:
        session_id = session_for(settings, config, row.chat_id, row.user_id)
        try:
            turn = turns.begin_turn(settings, session_id, row.content)
        except SessionBusy:
            raise  # an API client is in the middle of a turn of this session: not a reason to leave it
        except Conflict:
            # Ended or full since it was looked up: the conversation goes on in a fresh session.
            session_id = fresh_session(settings, config, row.chat_id, row.user_id)
            turn = turns.begin_turn(settings, session_id, row.content)
        reply = turn.run()
        return reply["content"], session_id, None
    except ApiError as exc:
        log.warning("channel %s: message %s from user %s got no answer: %s", config.name, row.external_id,
                    row.user_id, exc.message)
        return f"Sorry, no answer this time ({exc.message}).", None, exc.message
    finally:
        typing.stop()
        release_connection()


def session_for(settings, config, chat_id: str, user_id: str) -> str:
    """The session this chat's user talks to: reused while open and not full, else a new one."""
    with connection():
        link = ChannelConversation.get_or_none((ChannelConversation.channel == config.name)
                                               & (ChannelConversation.chat_id == chat_id)
                                               & (ChannelConversation.user_id == user_id))
        if link is not None:
            session = AgentSession.get_or_none(AgentSession.id == link.session_id)
            if (session is not None and session.status != TERMINATED
                    and session.turn_count < settings.get("agent.max_turns")):
                return session.id
    return fresh_session(settings, config, chat_id, user_id, end_previous=False)


def fresh_session(settings, config, chat_id: str, user_id: str, end_previous: bool = True) -> str:
    """A new session for this chat's user; the one it replaces is ended (``/new``)."""
    with connection():
        link = ChannelConversation.get_or_none((ChannelConversation.channel == config.name)
                                               & (ChannelConversation.chat_id == chat_id)
                                               & (ChannelConversation.user_id == user_id))
        if link is not None and end_previous:
            try:
                sessions.terminate_session(link.session_id)
            except ApiError:
                pass  # ended or gone already
        session = sessions.create_session(settings, config.name, user_id,
                                          {"channel_type": config.type, "chat_id": chat_id})
        with transaction():
            (ChannelConversation.insert(channel=config.name, chat_id=chat_id, user_id=user_id, session_id=session.id)
             .on_conflict(conflict_target=[ChannelConversation.channel, ChannelConversation.chat_id,
                                           ChannelConversation.user_id],
                          update={ChannelConversation.session_id: session.id})
             .execute())
    return session.id


def deliver(settings, config, connector, row: ChannelMessage) -> None:
    """Send the stored reply where the message came from (or to its ``reply_url``)."""
    if row.reply_url:
        post_reply(settings, config, row)
    elif config.type != "webhook":  # a webhook sender without reply_url has its reply in the response
        connector.send(row.chat_id, row.reply, row.thread)


def answer_now(state, row: ChannelMessage) -> dict:
    """Answer a message while its sender waits (a webhook without ``reply_url``), in turn with its chat."""
    settings = state.settings
    lease = HeldLease(f"channel-chat:{partition(row.channel, row.chat_id)}", settings.get("channels.turn_claim_secs"))
    if not lease.acquire(wait=settings.get("agent.lock_wait_secs")):
        raise SessionBusy(f"Chat {row.chat_id[:64]} is still being answered; retry later")
    try:
        content = answer(state, row)
        with connection():
            session_id = ChannelMessage.get_by_id(row.id).session_id
    finally:
        lease.release()
        release_connection()
    return {"session_id": session_id, "content": content}


def post_reply(settings, config, row: ChannelMessage) -> None:
    """POST the reply to the sender's ``reply_url``, signed like the message was, through the SSRF guard."""
    body = jsonbody.dumps({"channel": row.channel, "in_reply_to": row.external_id, "chat_id": row.chat_id,
                       "user_id": row.user_id, "session_id": row.session_id, "content": row.reply})
    try:
        target = targets.parse(row.reply_url)
        addresses = targets.allowed_addresses(target, settings.get("hooks.allow_private_targets"))
        headers = {"Content-Type": "application/json", "User-Agent": "Lockgate-Channels",
                   **signing.headers(config.get("secret"), f"{row.external_id}.reply", int(time.time()), body)}
        response = targets.post(target, addresses, headers, body.encode(), REPLY_TIMEOUT_SECS)
    except (ValueError, targets.TargetRefused) as exc:
        log.warning("channel %s: reply to %s not sent: %s", config.name, row.external_id, exc)
        return  # a refused target stays refused: retrying will not help
    except targets.TransportError as exc:
        raise ChannelError(f"reply_url: {exc}") from None
    if response.status >= 300:
        raise ChannelError(f"reply_url answered HTTP {response.status}", retry_after=response.retry_after)


class _Typing:
    """The platform's typing indicator, renewed while the turn runs (each lasts a few seconds)."""

    def __init__(self, connector, chat_id: str):
        self.connector = connector
        self.chat_id = chat_id
        self._done = threading.Event()
        self._every = getattr(connector, "typing_every_secs", 4.0)

    def start(self) -> None:
        if getattr(self.connector, "typing", None) is not None:
            threading.Thread(target=self._run, daemon=True).start()

    def stop(self) -> None:
        self._done.set()

    def _run(self) -> None:
        while not self._done.is_set():
            try:
                self.connector.typing(self.chat_id)
            except ChannelError as exc:
                log.debug("typing indicator failed: %s", exc.reason)
            if self._done.wait(self._every):
                return


def gave_up(claim: jobs.Claim, outcome: jobs.Outcome, state) -> None:
    """Every retry failed: the chat's unsent replies are given up, so its next messages are answered."""
    (ChannelMessage.update(state=FAILED, error=(outcome.error or "could not be sent")[:2000])
     .where((ChannelMessage.channel == claim.payload["channel"]) & (ChannelMessage.chat_id == claim.payload["chat"])
            & (ChannelMessage.state == ANSWERED)).execute())
    log.warning("channel %s: replies in chat %s given up: %s", claim.payload["channel"], claim.payload["chat"],
                outcome.error)


KIND = jobs.Kind(name=KIND_NAME, handler=handle, limits=limits, on_gave_up=gave_up)
