"""The Tool Review security knowledge base: entries and their full-text index.

Searched with the database's own full-text index, as agent memory is: an
FTS5 table kept in step by triggers on SQLite, a generated, weighted
tsvector column with a GIN index on PostgreSQL. Titles and keywords weigh
more than the guidance text.
"""

from peewee import AutoField, CharField, DateTimeField, PostgresqlDatabase, TextField

from migrations import frozen_model

SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE review_kb_fts USING fts5("
    "title, keywords, insight, content='review_kb_entry', content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER review_kb_entry_ai AFTER INSERT ON review_kb_entry BEGIN "
    "INSERT INTO review_kb_fts (rowid, title, keywords, insight) "
    "VALUES (new.id, new.title, new.keywords, new.insight); END",
    "CREATE TRIGGER review_kb_entry_ad AFTER DELETE ON review_kb_entry BEGIN "
    "INSERT INTO review_kb_fts (review_kb_fts, rowid, title, keywords, insight) "
    "VALUES ('delete', old.id, old.title, old.keywords, old.insight); END",
    "CREATE TRIGGER review_kb_entry_au AFTER UPDATE ON review_kb_entry BEGIN "
    "INSERT INTO review_kb_fts (review_kb_fts, rowid, title, keywords, insight) "
    "VALUES ('delete', old.id, old.title, old.keywords, old.insight); "
    "INSERT INTO review_kb_fts (rowid, title, keywords, insight) "
    "VALUES (new.id, new.title, new.keywords, new.insight); END",
)

POSTGRES_SEARCH = (
    "ALTER TABLE review_kb_entry ADD COLUMN search tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', keywords), 'A') || "
    "setweight(to_tsvector('english', insight), 'B')) STORED",
    "CREATE INDEX review_kb_entry_search ON review_kb_entry USING GIN (search)",
)


def upgrade(db):
    entry = frozen_model(db, "review_kb_entry", {
        "id": AutoField(),
        "key": CharField(max_length=200, unique=True),
        "source": CharField(max_length=100),
        "category": CharField(max_length=64),
        "cwe": CharField(max_length=16, null=True),
        "title": CharField(max_length=300),
        "insight": TextField(),
        "keywords": TextField(),
        "created_at": DateTimeField(),
        "updated_at": DateTimeField(),
    }, indexes=((("source",), False),))
    db.create_tables([entry])
    for statement in POSTGRES_SEARCH if isinstance(db, PostgresqlDatabase) else SQLITE_SEARCH:
        db.execute_sql(statement)
