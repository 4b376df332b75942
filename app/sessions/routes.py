from flask import current_app, request

from app.core import sse, streams
from app.core.api import Blueprint, event_stream
from app.sessions import service, turns
from app.sessions.schemas import (
    MessageCreateSchema,
    MessageListSchema,
    MessageSchema,
    PageQuerySchema,
    SessionCreateSchema,
    SessionListQuerySchema,
    SessionListSchema,
    SessionSchema,
)

blp = Blueprint("sessions", __name__, url_prefix="/api/v1/sessions",
                description="Agent sessions and their messages", rate_limits=("sessions_read", "sessions_write"))

SSE_DOC = {"responses": {200: {
    "description": "The reply, or with `Accept: text/event-stream` (or `stream: true`) Server-Sent Events: "
                   "`received`, `delta`, `tool_call`, `tool_result`, then `done` (or `error`)",
    "content": event_stream("The turn as it happens; the stream ends after `done` or `error`", {
        "received": "`{\"message\": Message}`, the user's message as stored",
        "delta": "`{\"text\": string}`, the next piece of the reply",
        "tool_call": "`{\"id\", \"name\", \"arguments\"}`, a tool the agent calls",
        "tool_result": "`{\"id\", \"name\", \"arguments\", \"result\", \"is_error\"}`, what it returned",
        "done": "`{\"message\": Message, \"usage\": {\"input\", \"output\"}}`, the reply as stored",
        "error": "`{\"error\": {\"code\", \"message\", \"details\"}}`, why the turn failed",
    }),
}}}


def _settings():
    return current_app.extensions["lockgate"].settings


def _wants_event_stream() -> bool:
    return request.accept_mimetypes.best_match(["application/json", "text/event-stream"]) == "text/event-stream"


@blp.route("", methods=["POST"])
@blp.arguments(SessionCreateSchema, required=False, description="Optional: without a body, an `api` session")
@blp.response(201, SessionSchema)
def create_session(body):
    """Start a session on a channel."""
    return service.create_session(_settings(), body["channel"], body["user_id"], body["metadata"])


@blp.route("", methods=["GET"])
@blp.arguments(SessionListQuerySchema, location="query")
@blp.response(200, SessionListSchema)
def list_sessions(args):
    """Sessions with a status (default active), newest first."""
    sessions, total = service.list_sessions(args["status"], args["channel"], args["limit"], args["offset"])
    return {"sessions": sessions, "total": total}


@blp.route("/<session_id>", methods=["GET"])
@blp.response(200, SessionSchema)
def get_session(session_id):
    """One session with its activity, turn count, token usage and metadata."""
    return service.find_session(session_id)


@blp.route("/<session_id>", methods=["DELETE"])
@blp.response(204)
@blp.error(409, "The session is already terminated")
def delete_session(session_id):
    """End a session; its transcript stays readable."""
    service.terminate_session(session_id)


@blp.route("/<session_id>/messages", methods=["POST"])
@blp.arguments(MessageCreateSchema)
@blp.response(200, MessageSchema)
@blp.error(409, "The session is terminated, busy with another message, or at agent.max_turns")
@blp.error(502, "The model provider failed")
@blp.doc(**SSE_DOC)
def send_message(body, session_id):
    """Send a message: runs one agent turn and returns the assistant's reply."""
    if not (body["stream"] or _wants_event_stream()):
        return turns.begin_turn(_settings(), session_id, body["content"]).run()
    # Claimed first: a refused stream must not have stored the message.
    slot = streams.claim()
    try:
        turn = turns.begin_turn(_settings(), session_id, body["content"])
    except BaseException:
        slot.release()
        raise
    response = sse.response(turns.sse_stream(turn), slot)
    # Frees the session even if the server never iterates the stream.
    response.call_on_close(turn.lock.release)
    return response


@blp.route("/<session_id>/messages", methods=["GET"])
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, MessageListSchema)
def list_messages(args, session_id):
    """The transcript, oldest first."""
    messages, total = service.list_messages(session_id, args["limit"], args["offset"])
    return {"messages": messages, "total": total}
