"""Agent sessions, their transcripts, per-status session counts, and agent memory.

Memory is searched with the database's own full-text index: an FTS5 table
kept in step by triggers on SQLite, a generated tsvector column with a GIN
index on PostgreSQL.
"""

from peewee import (
    AutoField,
    BigIntegerField,
    CharField,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    PostgresqlDatabase,
    TextField,
)

from migrations import frozen_model

SQLITE_MEMORY_SEARCH = (
    "CREATE VIRTUAL TABLE memory_fts USING fts5("
    "content, content='memory_entry', content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER memory_entry_ai AFTER INSERT ON memory_entry BEGIN "
    "INSERT INTO memory_fts (rowid, content) VALUES (new.id, new.content); END",
    "CREATE TRIGGER memory_entry_ad AFTER DELETE ON memory_entry BEGIN "
    "INSERT INTO memory_fts (memory_fts, rowid, content) VALUES ('delete', old.id, old.content); END",
    "CREATE TRIGGER memory_entry_au AFTER UPDATE OF content ON memory_entry BEGIN "
    "INSERT INTO memory_fts (memory_fts, rowid, content) VALUES ('delete', old.id, old.content); "
    "INSERT INTO memory_fts (rowid, content) VALUES (new.id, new.content); END",
)

POSTGRES_MEMORY_SEARCH = (
    "ALTER TABLE memory_entry ADD COLUMN search tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english', content)) STORED",
    "CREATE INDEX memory_entry_search ON memory_entry USING GIN (search)",
)


def upgrade(db):
    session = frozen_model(db, "agent_session", {
        "id": CharField(primary_key=True, max_length=40),
        "channel": CharField(max_length=64),
        "user_id": CharField(max_length=200, null=True),
        "status": CharField(max_length=16),
        "created_at": DateTimeField(),
        "last_activity": DateTimeField(),
        "turn_count": IntegerField(default=0),
        "message_count": IntegerField(default=0),
        "input_tokens": BigIntegerField(default=0),
        "output_tokens": BigIntegerField(default=0),
        "metadata": TextField(),
    }, indexes=(
        # Listing pages newest first within a status (and a channel) straight off an index.
        (("status", "created_at", "id"), False),
        (("status", "channel", "created_at", "id"), False),
        # The sweeper's range scans.
        (("status", "last_activity"), False),
    ))
    message = frozen_model(db, "session_message", {
        "id": CharField(primary_key=True, max_length=40),
        "session": ForeignKeyField(session, column_name="session_id", on_delete="CASCADE"),
        "seq": IntegerField(),
        "role": CharField(max_length=16),
        "content": TextField(),
        "tool_calls": TextField(),
        "steps": TextField(),
        "input_tokens": IntegerField(null=True),
        "output_tokens": IntegerField(null=True),
        "created_at": DateTimeField(),
    }, indexes=((("session", "seq"), True),))
    tally = frozen_model(db, "session_tally", {
        "id": AutoField(),
        "status": CharField(max_length=16),
        "channel": CharField(max_length=64),
        "count": BigIntegerField(default=0),
    }, indexes=((("status", "channel"), True),))
    memory = frozen_model(db, "memory_entry", {
        "id": AutoField(),
        "session_id": CharField(max_length=40),
        "user_id": CharField(max_length=200, null=True),
        "seq": IntegerField(),
        "content": TextField(),
        "created_at": DateTimeField(),
    }, indexes=(
        (("user_id",), False),
        (("session_id", "seq"), False),
    ))
    db.create_tables([session, message, tally, memory])
    statements = POSTGRES_MEMORY_SEARCH if isinstance(db, PostgresqlDatabase) else SQLITE_MEMORY_SEARCH
    for statement in statements:
        db.execute_sql(statement)
