"""Channels: live connection state, inbound platform messages, and chat-to-session links."""

from peewee import AutoField, CharField, DateTimeField, FloatField, IntegerField, TextField

from migrations import frozen_model


def upgrade(db):
    state = frozen_model(db, "channel_state", {
        "name": CharField(primary_key=True, max_length=64),
        "status": CharField(max_length=16),
        "owner": CharField(max_length=200, null=True),
        "since": DateTimeField(),
        "connected_at": DateTimeField(null=True),
        "error": TextField(null=True),
        "reconnects": IntegerField(default=0),
        "failures": IntegerField(default=0),
        "cursor": TextField(null=True),
        "last_message_at": DateTimeField(null=True),
        "last_activity_at": DateTimeField(null=True),
        "cadence_secs": FloatField(null=True),
        "latency_ms": FloatField(null=True),
        "latency_at": DateTimeField(null=True),
    })
    message = frozen_model(db, "channel_message", {
        "id": AutoField(),
        "channel": CharField(max_length=64),
        "external_id": CharField(max_length=200),
        "chat_id": CharField(max_length=200),
        "user_id": CharField(max_length=200),
        "thread": CharField(max_length=200, null=True),
        "content": TextField(),
        "reply_url": TextField(null=True),
        "state": CharField(max_length=16, default="pending"),
        "session_id": CharField(max_length=40, null=True),
        "reply": TextField(null=True),
        "error": TextField(null=True),
        "received_at": DateTimeField(),
        "replied_at": DateTimeField(null=True),
    }, indexes=((("channel", "external_id"), True), (("channel", "chat_id", "state", "id"), False)))
    conversation = frozen_model(db, "channel_conversation", {
        "id": AutoField(),
        "channel": CharField(max_length=64),
        "chat_id": CharField(max_length=200),
        "user_id": CharField(max_length=200),
        "session_id": CharField(max_length=40),
    }, indexes=((("channel", "chat_id", "user_id"), True),))
    db.create_tables([state, message, conversation])
