"""Long-term memory: completed turns saved as entries, recalled by full-text search.

``[memory] backend = "sqlite"`` keeps memory in the service's database and
searches it with that database's full-text index: FTS5 ranked by BM25 on
SQLite, a tsvector column ranked by ts_rank on PostgreSQL. ``"none"`` turns
memory off: nothing is saved or recalled.

Entries belong to a user: a session with a ``user_id`` recalls what any
session of that user saved; a session without one recalls only its own turns;
a run with neither (a runtime execution without a user) recalls nothing.
One user's conversations never surface in another user's prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from peewee import fn

from app.agent.models import MemoryEntry
from app.core.db import database, is_postgres, prepared, utcnow

# The query is the user's whole message: keep the search to its first words.
MAX_QUERY_TERMS = 32
MAX_PART_CHARS = 4_000
WORD = re.compile(r"[^\W_]+")

# Counted on every status request.
_count_entries = prepared(lambda: MemoryEntry.select(fn.COUNT(MemoryEntry.id)))


@dataclass(frozen=True)
class Scope:
    """Whose memories a turn may recall: the user's when known, else the session's own.

    ``skip_from_seq``: entries of this session from that seq on are already in
    the turn's history, so recalling them would only repeat it.
    """

    session_id: str | None = None
    user_id: str | None = None
    skip_from_seq: int | None = None


@dataclass(frozen=True)
class Recalled:
    content: str
    session_id: str
    created_at: datetime


def entry_text(user_content: str, reply: str) -> str:
    return f"User: {user_content[:MAX_PART_CHARS]}\nAssistant: {reply[:MAX_PART_CHARS]}"


def search_terms(text: str) -> list[str]:
    """Distinct words of the text, lower-cased, in order; no search syntax survives."""
    seen: dict[str, None] = {}
    for word in WORD.findall(text.lower()):
        if len(word) > 1 or not word.isascii():
            seen.setdefault(word, None)
        if len(seen) >= MAX_QUERY_TERMS:
            break
    return list(seen)


class Memory:
    """Memory in the database; the search itself differs per database."""

    def __init__(self, backend: str):
        self.backend = backend

    def save(self, session_id: str, user_id: str | None, seq: int, content: str) -> None:
        MemoryEntry.create(session_id=session_id, user_id=user_id, seq=seq, content=content,
                           created_at=utcnow())

    def count(self) -> int:
        return int(_count_entries().fetchone()[0])

    def recall(self, query: str, scope: Scope, limit: int) -> list[Recalled]:
        terms = search_terms(query)
        if not terms or limit <= 0 or (scope.user_id is None and scope.session_id is None):
            return []
        where, params = self._scope_clause(scope)
        rows = database.execute_sql(self._search_sql(where), self._search_params(terms, params, limit))
        return [Recalled(content=row[0], session_id=row[1], created_at=_as_datetime(row[2])) for row in rows]

    def _scope_clause(self, scope: Scope) -> tuple[str, list]:
        p = database.param
        if scope.user_id is not None:
            where, params = f"m.user_id = {p}", [scope.user_id]
        else:
            where, params = f"m.session_id = {p}", [scope.session_id]
        if scope.skip_from_seq is not None and scope.session_id is not None:
            where += f" AND NOT (m.session_id = {p} AND m.seq >= {p})"
            params += [scope.session_id, scope.skip_from_seq]
        return where, params

    def _search_sql(self, where: str) -> str:
        raise NotImplementedError

    def _search_params(self, terms: list[str], scope_params: list, limit: int) -> list:
        raise NotImplementedError


class SqliteMemory(Memory):
    def _search_sql(self, where: str) -> str:
        # bm25() is lower for better matches.
        return (
            "SELECT m.content, m.session_id, m.created_at FROM memory_fts "
            "JOIN memory_entry m ON m.id = memory_fts.rowid "
            f"WHERE memory_fts MATCH ? AND {where} "
            "ORDER BY bm25(memory_fts), m.id DESC LIMIT ?"
        )

    def _search_params(self, terms, scope_params, limit):
        # Quoted terms joined by OR: any word may match, more matches rank higher.
        match = " OR ".join(f'"{term}"' for term in terms)
        return [match, *scope_params, limit]


class PostgresMemory(Memory):
    def _search_sql(self, where: str) -> str:
        return (
            "SELECT m.content, m.session_id, m.created_at FROM memory_entry m, "
            "to_tsquery('english', %s) AS q "
            f"WHERE m.search @@ q AND {where} "
            "ORDER BY ts_rank(m.search, q) DESC, m.id DESC LIMIT %s"
        )

    def _search_params(self, terms, scope_params, limit):
        return [" | ".join(terms), *scope_params, limit]


class NoMemory(Memory):
    """``backend = "none"``: nothing saved, nothing recalled."""

    def save(self, session_id, user_id, seq, content) -> None:
        return None

    def count(self) -> int:
        return 0

    def recall(self, query, scope, limit) -> list[Recalled]:
        return []


def open_memory(backend: str) -> Memory:
    """The memory for the configured backend on the database in use.

    Its ``backend`` names what really serves it ("postgresql" when the service
    runs on PostgreSQL), which is what the status reports.
    """
    if backend == "none":
        return NoMemory("none")
    return PostgresMemory("postgresql") if is_postgres() else SqliteMemory("sqlite")


def _as_datetime(value) -> datetime:
    # SQLite hands raw SQL results back as text.
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return value
