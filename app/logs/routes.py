from flask import current_app, request

from app.core import sse
from app.core.api import Blueprint
from app.core.errors import BadRequest
from app.logs import service
from app.logs.schemas import LogsQuerySchema, LogsSchema, StreamQuerySchema

blp = Blueprint("logs", __name__, url_prefix="/api/v1/logs", description="Log queries and live tails (SSE)")

SSE_DOC = {"responses": {"200": {"description": "Server-Sent Events: `event: log`, `id`, JSON data",
                                 "content": {"text/event-stream": {"schema": {"type": "string"}}}}}}


def _filter(args, default_since=True):
    try:
        return service.make_filter(args["level"], args["module"], args["since"], default_since)
    except ValueError as exc:
        raise BadRequest("Invalid query parameter", details={"since": [str(exc)]}) from None


def _last_event_id():
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if raw is None:
        return None
    if not raw.isdigit():
        raise BadRequest("Last-Event-ID must be a log entry id", details={"Last-Event-ID": [raw[:64]]})
    return int(raw)


def _stream(args):
    log_filter = _filter(args, default_since=False)
    heartbeat = current_app.extensions["lockgate"].settings.get("logs.heartbeat_secs")
    return sse.response(service.stream(log_filter, _last_event_id(), heartbeat))


@blp.route("", methods=["GET"])
@blp.arguments(LogsQuerySchema, location="query")
@blp.response(200, LogsSchema)
@blp.doc(responses={"200": {"content": {"text/event-stream": {"schema": {"type": "string"}}}}})
def list_logs(args):
    """Recent log entries (newest ``limit``, oldest first), or an SSE stream with ``stream=true``."""
    if args["stream"]:
        return _stream(args)
    entries, total = service.query(_filter(args), args["limit"])
    return {"entries": entries, "total": total}


@blp.route("/stream", methods=["GET"])
@blp.arguments(StreamQuerySchema, location="query")
@blp.doc(**SSE_DOC)
def stream_logs(args):
    """Live log tail as Server-Sent Events; ``Last-Event-ID`` resumes without gaps."""
    return _stream(args)
