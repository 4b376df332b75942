"""Channel facts every worker reads: the live connection state, inbound messages, and chat-to-session links.

The supervisor's ``unit_state`` says which worker runs a channel's unit; these
tables say what the connection is doing (``channel_state``), which platform
messages were taken in (``channel_message``, unique per platform id, so a
message is never handled twice) and which session a chat's user talks to
(``channel_conversation``).
"""

from peewee import AutoField, CharField, DateTimeField, FloatField, IntegerField, TextField

from app.core.db import BaseModel

CONNECTED, CONNECTING, RECONNECTING, DISCONNECTED, DISABLED = (
    "connected", "connecting", "reconnecting", "disconnected", "disabled")
STATUSES = (CONNECTED, CONNECTING, RECONNECTING, DISCONNECTED, DISABLED)

# Where an inbound message stands.
PENDING, ANSWERED, SENT, FAILED = "pending", "answered", "sent", "failed"


class ChannelState(BaseModel):
    name = CharField(primary_key=True, max_length=64)
    status = CharField(max_length=16)
    owner = CharField(max_length=200, null=True)
    since = DateTimeField()
    connected_at = DateTimeField(null=True)
    error = TextField(null=True)
    reconnects = IntegerField(default=0)
    failures = IntegerField(default=0)  # consecutive failed connection attempts
    cursor = TextField(null=True)  # where reading resumes (Telegram: the next update offset)
    last_message_at = DateTimeField(null=True)
    last_activity_at = DateTimeField(null=True)  # the platform's last sign of life
    cadence_secs = FloatField(null=True)  # how often the platform shows a sign of life when healthy
    latency_ms = FloatField(null=True)
    latency_at = DateTimeField(null=True)


class ChannelMessage(BaseModel):
    id = AutoField()
    channel = CharField(max_length=64)
    external_id = CharField(max_length=200)  # the platform's id for it (update_id, message id, event id)
    chat_id = CharField(max_length=200)
    user_id = CharField(max_length=200)
    thread = CharField(max_length=200, null=True)  # where the reply goes inside the chat (a Slack thread)
    content = TextField()
    reply_url = TextField(null=True)
    state = CharField(max_length=16, default=PENDING)
    session_id = CharField(max_length=40, null=True)
    reply = TextField(null=True)
    error = TextField(null=True)
    received_at = DateTimeField()
    replied_at = DateTimeField(null=True)

    class Meta:
        indexes = ((("channel", "external_id"), True), (("channel", "chat_id", "state", "id"), False))


class ChannelConversation(BaseModel):
    id = AutoField()
    channel = CharField(max_length=64)
    chat_id = CharField(max_length=200)
    user_id = CharField(max_length=200)
    session_id = CharField(max_length=40)

    class Meta:
        indexes = ((("channel", "chat_id", "user_id"), True),)
