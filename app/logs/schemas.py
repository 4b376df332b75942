import marshmallow as ma

from app.core.logging import LEVEL_NAMES, LEVELS
from app.core.schema import QueryBoolean, UtcDateTime, duration_pattern

# The shapes app.core.timeparse reads, bounded so that every value of this shape is served: a duration
# of at most a few decades, or an ISO 8601 date (a day that exists, years 1000 to 2999) with an optional
# time and offset.
_YEAR = "[12][0-9]{3}"
_LEAP_YEAR = "[12][0-9](?:0[48]|[2468][048]|[13579][26])|(?:1[26]|2[048])00"
_DATE = (f"(?:{_YEAR}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
         f"|(?:0[13578]|1[02])-31)|(?:{_LEAP_YEAR})-02-29)")
_TIME = ("(?:[Tt ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\\.[0-9]{1,6})?)?"
         "(?:[Zz]|[+-](?:0[0-9]|1[0-3]):[0-5][0-9])?)?")
SINCE_PATTERN = f"^(?:{duration_pattern()}|{_DATE}{_TIME})$"
EVENT_ID_PATTERN = "^[0-9]{1,18}$"


class StreamQuerySchema(ma.Schema):
    level = ma.fields.String(load_default="info", validate=ma.validate.OneOf(list(LEVELS)),
                             metadata={"description": "Minimum level"})
    module = ma.fields.String(load_default=None, validate=ma.validate.Length(max=200),
                              metadata={"description": "Module, with its sub-modules (agent matches agent::loop)"})
    since = ma.fields.String(load_default=None, validate=ma.validate.Regexp(
        SINCE_PATTERN, error="expected an ISO 8601 timestamp or a duration like 500ms, 30s, 15m, 1h, 2d, 1w"),
        metadata={"description": "ISO 8601 timestamp (UTC without an offset) or a duration such as 1h, 30m, 2d"})


    last_event_id = ma.fields.String(load_default=None, validate=ma.validate.Regexp(EVENT_ID_PATTERN), metadata={
        "description": "Resume after this entry id (for clients that cannot send the Last-Event-ID header)"})


class LogsQuerySchema(StreamQuerySchema):
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(min=1, max=1000))
    stream = QueryBoolean(load_default=False, metadata={"description": "Answer as Server-Sent Events"})


class LogEntrySchema(ma.Schema):
    id = ma.fields.Integer()
    timestamp = UtcDateTime()
    level = ma.fields.Function(lambda entry: LEVEL_NAMES.get(entry.level, "info"),
                               metadata={"type": "string", "enum": list(LEVELS)})
    module = ma.fields.String()
    message = ma.fields.String()
    session_id = ma.fields.String(allow_none=True)


class LogsSchema(ma.Schema):
    entries = ma.fields.List(ma.fields.Nested(LogEntrySchema))
    total = ma.fields.Integer()
