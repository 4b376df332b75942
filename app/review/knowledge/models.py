from peewee import AutoField, CharField, DateTimeField, TextField

from app.core.db import BaseModel


class KnowledgeEntry(BaseModel):
    """One piece of security guidance; its full-text index is kept by the database (m0008)."""

    id = AutoField()
    key = CharField(max_length=200, unique=True)
    source = CharField(max_length=100)
    category = CharField(max_length=64)
    cwe = CharField(max_length=16, null=True)
    title = CharField(max_length=300)
    insight = TextField()
    keywords = TextField()  # the entry's keywords, its category and CWE as searchable words
    created_at = DateTimeField()
    updated_at = DateTimeField()

    class Meta:
        table_name = "review_kb_entry"
