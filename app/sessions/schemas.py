import json

import marshmallow as ma

from app.core.schema import Boolean, Inline, JsonList, JsonObject, JsonValue, UtcDateTime
from app.sessions.models import ACTIVE, STATUSES

MAX_METADATA_BYTES = 16_384
MAX_CONTENT_CHARS = 100_000
MAX_PAGE = 200
# Deep offsets cost a scan in any database; anything past this is a client bug.
MAX_OFFSET = 10_000_000


def _known_channels(settings) -> list[str]:
    from app.sessions import service  # which imports this module

    return service.known_channels(settings)


def _metadata_size(value: dict) -> None:
    if len(json.dumps(value, separators=(",", ":")).encode()) > MAX_METADATA_BYTES:
        raise ma.ValidationError(f"must be at most {MAX_METADATA_BYTES} bytes as JSON")


class SessionCreateSchema(ma.Schema):
    channel = ma.fields.String(load_default="api", validate=ma.validate.Length(min=1, max=64), metadata={
        "choices_from": _known_channels,
        "description": "`api`, or a channel configured under [channels_config] (listed as configured at start-up)"})
    user_id = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(min=1, max=200))
    metadata = ma.fields.Dict(keys=ma.fields.String(validate=ma.validate.Length(max=200)), values=JsonValue(),
                              load_default=dict, validate=_metadata_size,
                              metadata={"description": f"Free-form, at most {MAX_METADATA_BYTES} bytes as JSON"})


class PageQuerySchema(ma.Schema):
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=MAX_PAGE))
    offset = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=MAX_OFFSET))


class SessionListQuerySchema(PageQuerySchema):
    status = ma.fields.String(load_default=ACTIVE, validate=ma.validate.OneOf(STATUSES))
    channel = ma.fields.String(load_default=None, validate=ma.validate.Length(min=1, max=64))


class TokenUsageSchema(ma.Schema):
    input = ma.fields.Integer(attribute="input_tokens")
    output = ma.fields.Integer(attribute="output_tokens")


class SessionSummarySchema(ma.Schema):
    id = ma.fields.String(metadata={"example": "sess_3f9c2a1b7d4e5f60718293a4"})
    channel = ma.fields.String()
    user_id = ma.fields.String(allow_none=True)
    status = ma.fields.String(metadata={"enum": list(STATUSES)})
    created_at = UtcDateTime()
    last_activity = UtcDateTime()


class SessionSchema(SessionSummarySchema):
    turn_count = ma.fields.Integer()
    token_usage = Inline(TokenUsageSchema)
    metadata = JsonObject()


class SessionListSchema(ma.Schema):
    sessions = ma.fields.List(ma.fields.Nested(SessionSummarySchema))
    total = ma.fields.Integer(metadata={"description": "Every matching session, not only this page"})


class MessageCreateSchema(ma.Schema):
    content = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=MAX_CONTENT_CHARS))
    stream = Boolean(
        load_default=False,
        metadata={"description": "Answer as Server-Sent Events (same as Accept: text/event-stream)"},
    )


class ToolCallSchema(ma.Schema):
    id = ma.fields.String()
    name = ma.fields.String()
    arguments = ma.fields.Dict()
    result = ma.fields.String()
    is_error = ma.fields.Boolean()


class MessageSchema(ma.Schema):
    id = ma.fields.String(metadata={"example": "msg_0a1b2c3d4e5f60718293a4b5"})
    session_id = ma.fields.String()
    seq = ma.fields.Integer(metadata={"description": "Position in the transcript, from 1"})
    role = ma.fields.String(metadata={"enum": ["user", "assistant"]})
    content = ma.fields.String()
    tool_calls = JsonList(ma.fields.Nested(ToolCallSchema))
    usage = Inline(TokenUsageSchema, when=lambda row: row.role == "assistant", allow_none=True,
                   metadata={"description": "Tokens the turn used (assistant messages)"})
    created_at = UtcDateTime()


class MessageListSchema(ma.Schema):
    messages = ma.fields.List(ma.fields.Nested(MessageSchema))
    total = ma.fields.Integer()
