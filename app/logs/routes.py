from flask import current_app, request

from app.core import sse, streams
from app.core.api import Blueprint, event_stream
from app.core.errors import BadRequest
from app.logs import service
from app.logs.schemas import LogsQuerySchema, LogsSchema, StreamQuerySchema

blp = Blueprint("logs", __name__, url_prefix="/api/v1/logs", description="Log queries and live tails (SSE)")

LOG_EVENTS = event_stream("Matching entries as they are written; a comment line every logs.heartbeat_secs",
                          {"log": "a LogEntry (`id`, `timestamp`, `level`, `module`, `message`, `session_id`)"})
SSE_DOC = {"responses": {200: {"description": "Server-Sent Events, one `log` event per entry, resumable by `id` "
                                              "(the `Last-Event-ID` header or `last_event_id`)",
                               "content": LOG_EVENTS}}}


def _filter(args, default_since=True):
    try:
        return service.make_filter(args["level"], args["module"], args["since"], default_since)
    except ValueError as exc:
        raise BadRequest("Invalid query parameter", details={"since": [str(exc)]}) from None


def _last_event_id():
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):  # int() takes no "²" and no 5,000 digits
        raise BadRequest("Last-Event-ID must be a log entry id", details={"Last-Event-ID": [raw[:64]]})
    return int(raw)


def _stream(args):
    log_filter = _filter(args, default_since=False)
    last_event_id = _last_event_id()
    settings = current_app.extensions["lockgate"].settings
    slot = streams.claim()
    return sse.response(service.stream(log_filter, last_event_id, settings.get("logs.heartbeat_secs"),
                                       settings.get("gateway.max_stream_backlog")), slot)


@blp.route("", methods=["GET"])
@blp.arguments(LogsQuerySchema, location="query")
@blp.response(200, LogsSchema)
@blp.doc(responses={200: {"description": "The entries as JSON, or with `stream=true` Server-Sent Events",
                          "content": LOG_EVENTS}})
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
