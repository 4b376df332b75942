import marshmallow as ma

from app.core.logging import LEVELS


class StreamQuerySchema(ma.Schema):
    level = ma.fields.String(load_default="info", validate=ma.validate.OneOf(list(LEVELS)),
                             metadata={"description": "Minimum level"})
    module = ma.fields.String(load_default=None, validate=ma.validate.Length(max=200),
                              metadata={"description": "Module, with its sub-modules (agent matches agent::loop)"})
    since = ma.fields.String(load_default=None, validate=ma.validate.Length(max=64),
                             metadata={"description": "ISO 8601 timestamp or a duration such as 1h, 30m, 2d"})


class LogsQuerySchema(StreamQuerySchema):
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(min=1, max=1000))
    stream = ma.fields.Boolean(load_default=False, metadata={"description": "Answer as Server-Sent Events"})


class LogEntrySchema(ma.Schema):
    id = ma.fields.Integer()
    timestamp = ma.fields.String()
    level = ma.fields.String()
    module = ma.fields.String()
    message = ma.fields.String()
    session_id = ma.fields.String(allow_none=True)


class LogsSchema(ma.Schema):
    entries = ma.fields.List(ma.fields.Nested(LogEntrySchema))
    total = ma.fields.Integer()
