"""What the channels API shows: the channel list, a restart's answer, health, and webhook messages."""

import marshmallow as ma

from app.core.schema import UtcDateTime


class ChannelSchema(ma.Schema):
    name = ma.fields.String(required=True)
    type = ma.fields.String(metadata={"description": "api, telegram, discord, slack or webhook"})
    status = ma.fields.String(metadata={"description": "connected, connecting, reconnecting, disconnected, disabled"})
    connected_at = UtcDateTime(allow_none=True)
    active_sessions = ma.fields.Integer()
    error = ma.fields.String(allow_none=True, metadata={"description": "Why it is not connected, in words"})
    restarts = ma.fields.Integer(metadata={"description": "Times its connection was restarted"})


class ChannelsSchema(ma.Schema):
    channels = ma.fields.List(ma.fields.Nested(ChannelSchema))


class ChannelRestartSchema(ma.Schema):
    name = ma.fields.String()
    status = ma.fields.String()


class ChannelHealthSchema(ma.Schema):
    name = ma.fields.String()
    healthy = ma.fields.Boolean()
    latency_ms = ma.fields.Integer(allow_none=True, metadata={"description": "A measured round trip to the platform"})
    last_message_at = UtcDateTime(allow_none=True)
    reason = ma.fields.String(metadata={"description": "Why it is not healthy"})


class WebhookMessageSchema(ma.Schema):
    """A message posted to a webhook channel (Standard Webhooks signed)."""

    class Meta:
        unknown = ma.RAISE

    user_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    content = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100_000))
    chat_id = ma.fields.String(validate=ma.validate.Length(min=1, max=200),
                               metadata={"description": "The conversation; defaults to the user"})
    reply_url = ma.fields.String(validate=ma.validate.Length(min=1, max=2048),
                                 metadata={"description": "Where the reply is POSTed instead of in the response"})


class WebhookReplySchema(ma.Schema):
    message_id = ma.fields.String()
    status = ma.fields.String(metadata={"description": "answered, or accepted (the reply goes to reply_url)"})
    session_id = ma.fields.String(allow_none=True)
    reply = ma.fields.String(allow_none=True)
