from flask import current_app, request

from app.core import sse
from app.core.api import Blueprint
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
from app.status.service import contribute

blp = Blueprint("sessions", __name__, url_prefix="/api/v1/sessions",
                description="Agent sessions and their messages")

contribute(service.status_counts)

SSE_DOC = {"responses": {"200": {
    "description": "The reply, or with `Accept: text/event-stream` (or `stream: true`) Server-Sent Events: "
                   "`received`, `delta`, `tool_call`, `tool_result`, then `done` (or `error`)",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Message"}},
                "text/event-stream": {"schema": {"type": "string"}}},
}}}


def _settings():
    return current_app.extensions["lockgate"].settings


def _wants_event_stream() -> bool:
    return request.accept_mimetypes.best_match(["application/json", "text/event-stream"]) == "text/event-stream"


@blp.route("", methods=["POST"])
@blp.arguments(SessionCreateSchema)
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
    return service.get_session(session_id)


@blp.route("/<session_id>", methods=["DELETE"])
@blp.response(204)
def delete_session(session_id):
    """End a session; its transcript stays readable."""
    service.terminate_session(session_id)


@blp.route("/<session_id>/messages", methods=["POST"])
@blp.arguments(MessageCreateSchema)
@blp.response(200, MessageSchema)
@blp.doc(**SSE_DOC)
def send_message(body, session_id):
    """Send a message: runs one agent turn and returns the assistant's reply."""
    turn = turns.begin_turn(_settings(), session_id, body["content"])
    if body["stream"] or _wants_event_stream():
        response = sse.response(turns.sse_stream(turn))
        # Frees the session even if the server never iterates the stream.
        response.call_on_close(turn.lock.release)
        return response
    return turn.run()


@blp.route("/<session_id>/messages", methods=["GET"])
@blp.arguments(PageQuerySchema, location="query")
@blp.response(200, MessageListSchema)
def list_messages(args, session_id):
    """The transcript, oldest first."""
    messages, total = service.list_messages(session_id, args["limit"], args["offset"])
    return {"messages": messages, "total": total}
