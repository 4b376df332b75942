"""The security knowledge base behind review insights: guidance per category and CWE, searched in full text.

Lockgate ships its own entries (``entries.json``); ``load_builtin`` puts
them in the database and ``import_file`` adds an operator's. Searching uses
the database's full-text index (FTS5 on SQLite, tsvector on PostgreSQL), so
the knowledge base grows without changing how findings are matched to it.
"""

from app.review.knowledge.store import (
    BUILTIN_SOURCE,
    KnowledgeFileError,
    import_entries,
    import_file,
    load_builtin,
    read_entries,
    read_import,
    search,
)

__all__ = ["BUILTIN_SOURCE", "KnowledgeFileError", "import_entries", "import_file", "load_builtin",
           "read_entries", "read_import", "search"]
