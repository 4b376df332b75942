"""Agent memory: one entry per completed turn, searched by full text."""

from peewee import AutoField, CharField, DateTimeField, IntegerField, TextField

from app.core.db import BaseModel


class MemoryEntry(BaseModel):
    id = AutoField()
    session_id = CharField(max_length=40)
    user_id = CharField(max_length=200, null=True)
    seq = IntegerField()  # the seq of the turn's reply in its session
    content = TextField()
    created_at = DateTimeField()
