"""A message to a session: one agent turn, stored around the call to the model.

A turn runs in three steps, each short on the database side:

1. ``begin_turn``: wait for the session's lock (one turn at a time per
   session, across workers), then in one transaction store the user's message,
   make an idle session active again and publish ``message.received``.
2. The agent runner (``app.agent.runner``) talks to the model and runs tools,
   given the conversation built from the transcript and memory recall. No
   transaction and no database connection is held meanwhile: a turn may take
   a minute.
3. In one transaction: store the reply, count the turn and its token usage,
   save the exchange to memory, publish ``message.sent``.

What a failed turn leaves behind: if the provider fails (502 ``provider_error``)
or the worker dies during step 2, the user's message stays in the transcript
with no reply after it, and nothing else changes: turn_count and token_usage
count completed turns only, and no half reply is ever stored. The next message
is handled normally (a dead worker's lock expires after ``agent.lock_ttl_secs``).
A session ended by DELETE while its turn runs still gets that turn's reply.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from app.agent import runner
from app.agent.loop import Step, ToolCallFinished, ToolCallStarted, TurnResult, replay
from app.agent.memory import Scope, entry_text, open_memory
from app.agent.providers import Message, ProviderError, TextDelta
from app.agent.runner import Contribution, Conversation, Identity
from app.core import events, sse
from app.core.areas import prompt_contributions
from app.core.db import release_connection, transaction, utcnow
from app.core.errors import ApiError, BadGateway, Conflict, InternalError
from app.core.logging import current_session_id
from app.sessions.lock import SessionLock
from app.sessions.models import ACTIVE, IDLE, TERMINATED, AgentSession, SessionMessage
from app.sessions.service import find_session, message_view, new_message_id, transition

log = logging.getLogger("agent::loop")

# The conversation sent to the model is the newest messages only; older turns
# reach it through memory recall.
HISTORY_MESSAGES = 100


class ProviderFailed(BadGateway):
    """502 ``provider_error``: the model could not be reached or answered with an error."""


@dataclass(frozen=True)
class Received:
    message: dict


@dataclass(frozen=True)
class Done:
    message: dict


@dataclass
class Turn:
    """A turn whose user message is stored and whose session lock is held."""

    session: AgentSession
    user_message: dict
    conversation: Conversation
    contributions: list[Contribution]
    lock: SessionLock
    settings: object

    @property
    def prompt(self) -> list[Message]:
        """The messages the model is sent, system prompt first."""
        return runner.prompt(self.conversation, self.contributions)

    def run(self) -> dict:
        """The whole turn; returns the reply as the messages API shows it."""
        reply = None
        for event in self.events(stream=False):
            if isinstance(event, Done):
                reply = event.message
        return reply

    def events(self, stream: bool) -> Iterator[Received | TextDelta | ToolCallStarted | ToolCallFinished | Done]:
        """The turn as it happens; with ``stream`` the model's text arrives in pieces."""
        session_tag = current_session_id.set(self.session.id)
        try:
            yield Received(self.user_message)
            result = None
            identity = Identity(session_id=self.session.id, user_id=self.session.user_id)
            for event in runner.run(self.settings, self.conversation, identity, contributions=self.contributions,
                                    stream=stream):
                if isinstance(event, TurnResult):
                    result = event
                else:
                    yield event
            reply = self._store_reply(result)
            log.info("turn %d finished: %d tool calls, %d input and %d output tokens",
                     self.session.turn_count + 1, len(result.tool_calls), result.usage.input, result.usage.output)
            yield Done(reply)
        except ProviderError as exc:
            log.warning("provider %s failed: %s", self.settings.get("provider.name"), exc.message)
            raise ProviderFailed(exc.message, details={"provider": self.settings.get("provider.name"),
                                                       "upstream_status": exc.status}) from None
        finally:
            self.lock.release()
            release_connection()
            _reset(current_session_id, session_tag)

    def _store_reply(self, result: TurnResult) -> dict:
        now = utcnow()
        memory = open_memory(self.settings.get("memory.backend"))
        with transaction():
            if not self.lock.confirm():
                raise Conflict(f"Session {self.session.id}: another message took over while this one was "
                               "answered; this reply was not stored")
            transition(self.session.id, (IDLE,), ACTIVE)
            session = _bump(self.session.id, now, turn=1, input_tokens=result.usage.input,
                            output_tokens=result.usage.output)
            row = SessionMessage.create(
                id=new_message_id(), session=self.session.id, seq=session.message_count, role="assistant",
                content=result.content,
                tool_calls=json.dumps([call.as_dict() for call in result.tool_calls], default=str),
                steps=json.dumps([step.as_dict() for step in result.steps], default=str),
                input_tokens=result.usage.input, output_tokens=result.usage.output, created_at=now,
            )
            memory.save(self.session.id, self.session.user_id, row.seq,
                        entry_text(self.user_message["content"], result.content))
            reply = message_view(row)
            events.publish("message.sent", {"session_id": self.session.id, "message": reply})
        return reply


def begin_turn(settings, session_id: str, content: str) -> Turn:
    """Everything before the model is asked; raises 404/409 before any waiting when it can."""
    _check_open(find_session(session_id), settings.get("agent.max_turns"))
    lock = SessionLock(session_id, settings.get("agent.lock_ttl_secs"), settings.get("agent.lock_wait_secs"))
    lock.acquire()
    try:
        with transaction():
            session, user_message = _store_user_message(session_id, content, settings.get("agent.max_turns"))
        conversation, contributions = _conversation(settings, session, user_message)
    except BaseException:
        lock.release()
        raise
    finally:
        release_connection()
    return Turn(session=session, user_message=user_message, conversation=conversation, contributions=contributions,
                lock=lock, settings=settings)


def _check_open(session: AgentSession, max_turns: int) -> None:
    if session.status == TERMINATED:
        raise Conflict(f"Session {session.id} is terminated")
    if session.turn_count >= max_turns:
        raise Conflict(f"Session {session.id} has reached the limit of {max_turns} turns (agent.max_turns)",
                       details={"turn_count": session.turn_count, "max_turns": max_turns})


def _store_user_message(session_id: str, content: str, max_turns: int) -> tuple[AgentSession, dict]:
    # Checked again under the lock: the turn that held it may have used the last one.
    _check_open(find_session(session_id), max_turns)
    now = utcnow()
    transition(session_id, (IDLE,), ACTIVE)
    session = _bump(session_id, now, open_only=True)
    if session is None:  # terminated since the check above
        raise Conflict(f"Session {session_id} is terminated")
    row = SessionMessage.create(
        id=new_message_id(), session=session_id, seq=session.message_count, role="user", content=content,
        tool_calls="[]", steps="[]", created_at=now,
    )
    message = message_view(row)
    events.publish("message.received", {"session_id": session_id, "message": message})
    return session, message


def _bump(session_id: str, now, turn: int = 0, input_tokens: int = 0, output_tokens: int = 0,
          open_only: bool = False) -> AgentSession | None:
    """Take the next message seq and record activity (and a finished turn's counts) in one UPDATE."""
    where = AgentSession.id == session_id
    if open_only:
        where &= AgentSession.status != TERMINATED
    rows = list(
        AgentSession.update(
            last_activity=now,
            message_count=AgentSession.message_count + 1,
            turn_count=AgentSession.turn_count + turn,
            input_tokens=AgentSession.input_tokens + input_tokens,
            output_tokens=AgentSession.output_tokens + output_tokens,
        )
        .where(where)
        .returning(AgentSession)
        .execute()
    )
    return rows[0] if rows else None


def _conversation(settings, session: AgentSession, user_message: dict) -> tuple[Conversation, list[Contribution]]:
    """The transcript so far, and the system prompt with what memory recalls for this message."""
    history, first_seq = _history(session.id, before_seq=user_message["seq"])
    scope = Scope(session_id=session.id, user_id=session.user_id, skip_from_seq=first_seq)
    contributions = [runner.instructions(settings.get("agent.system_prompt")),
                     runner.recalled(settings, user_message["content"], scope),
                     *prompt_contributions(settings, user_message["content"])]
    return Conversation(user_message["content"], history), contributions


def _history(session_id: str, before_seq: int) -> tuple[list[Message], int]:
    """The newest messages before this one, as the provider saw them, and the first seq included."""
    # Plain tuples: this runs every turn over up to HISTORY_MESSAGES rows.
    rows = list(
        SessionMessage.select(SessionMessage.seq, SessionMessage.role, SessionMessage.content, SessionMessage.steps)
        .where((SessionMessage.session == session_id) & (SessionMessage.seq < before_seq))
        .order_by(SessionMessage.seq.desc())
        .limit(HISTORY_MESSAGES)
        .tuples()
    )[::-1]
    # A conversation must open with the user (Anthropic rejects anything else).
    while rows and rows[0][1] != "user":
        rows.pop(0)
    messages: list[Message] = []
    for _seq, role, content, steps in rows:
        if role == "user":
            messages.append(Message("user", content))
        else:
            messages.extend(replay(content, [Step.from_dict(step) for step in json.loads(steps)]))
    return messages, rows[0][0] if rows else before_seq


def _reset(variable, token) -> None:
    try:
        variable.reset(token)
    except ValueError:  # finished in another context (a closed stream): just clear it
        variable.set(None)


# ---- Server-Sent Events ------------------------------------------------------------


def sse_stream(turn: Turn) -> Iterator[str]:
    """The turn as SSE: ``received``, ``delta``, ``tool_call``, ``tool_result``, then ``done``.

    A failure once the stream has begun is an ``error`` event carrying the same
    body an error response would have. A client that goes away does not cut the
    turn short: it runs to the end and is stored, as if the client had stayed.
    """
    events_ = turn.events(stream=True)
    finished = False
    try:
        for event in events_:
            yield _frame(event)
        finished = True
    except ApiError as exc:
        finished = True
        yield _error_frame(exc)
    except Exception:
        finished = True
        log.exception("turn of session %s failed", turn.session.id)
        yield _error_frame(InternalError())
    finally:
        if not finished:
            _finish_unwatched(events_, turn.session.id)


def _finish_unwatched(events_, session_id: str) -> None:
    try:
        for _ in events_:
            pass
    except Exception as exc:
        log.info("turn of session %s (client gone) ended with %s", session_id, type(exc).__name__)


def _frame(event) -> str:
    if isinstance(event, TextDelta):
        return sse.frame({"text": event.text}, event="delta")
    if isinstance(event, ToolCallStarted):
        call = event.call
        return sse.frame({"id": call.id, "name": call.name, "arguments": call.arguments}, event="tool_call")
    if isinstance(event, ToolCallFinished):
        return sse.frame(event.record.as_dict(), event="tool_result")
    if isinstance(event, Received):
        return sse.frame({"message": event.message}, event="received")
    return sse.frame({"message": event.message, "usage": event.message["usage"]}, event="done")


def _error_frame(exc: ApiError) -> str:
    return sse.frame({"error": {"code": exc.code, "message": exc.message, "details": exc.details}}, event="error")
