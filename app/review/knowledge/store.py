"""Reading, storing and searching knowledge-base entries (needs a database connection)."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

from app.core.db import database, is_postgres, transaction, utcnow
from app.review.knowledge.models import KnowledgeEntry

BUILTIN_FILE = Path(__file__).with_name("entries.json")
BUILTIN_SOURCE = "security_kb"
BATCH = 100
MAX_QUERY_TERMS = 32
# Coverage counts matched query words against the query's length, taken between these bounds: eight
# matched words cover any query, and one word alone is weak evidence however short the query.
FULL_COVERAGE_TERMS = 8
MIN_COVERAGE_TERMS = 4
PREFIX = 5  # words compared by their first letters: "injection" meets "injected"
WORD = re.compile(r"[^\W_]+")
CWE = re.compile(r"(?i)\bCWE-(\d{1,5})\b")
KEY = re.compile(r"^[\w.:-]{1,200}$")
CATEGORY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
STOP_WORDS = frozenset(
    "a an and any are as at be by can code could for from has have in into is it its may must no not of on or "
    "so such than that the their them then there these this to tool was were when which while who will with "
    "without you your line".split())


class KnowledgeFileError(ValueError):
    """A knowledge file that cannot be imported; the message says where and why."""


# ---- reading ------------------------------------------------------------------------


def read_entries(path) -> tuple[str, list[dict]]:
    """The source name and the validated entries of a JSON or TOML knowledge file."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
        data = tomllib.loads(raw) if path.suffix.lower() == ".toml" else json.loads(raw)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise KnowledgeFileError(f"{path.name}: cannot be read: {exc}") from None
    if isinstance(data, list):
        data = {"entries": data}
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise KnowledgeFileError(f"{path.name}: expected a list of entries or an object with 'entries'")
    source = data.get("source", path.stem)
    if not isinstance(source, str) or not source.strip() or len(source) > 100:
        raise KnowledgeFileError(f"{path.name}: 'source' must be a name of at most 100 characters")
    return source.strip(), [_entry(item, index) for index, item in enumerate(data["entries"], start=1)]


def _entry(item, index: int) -> dict:
    def fail(reason: str):
        raise KnowledgeFileError(f"entry {index}: {reason}")

    if not isinstance(item, dict):
        fail("must be an object")
    for name in ("key", "category", "title", "insight"):
        if not isinstance(item.get(name), str) or not item[name].strip():
            fail(f"'{name}' is required and must be text")
    if not KEY.match(item["key"]):
        fail("'key' may hold letters, digits and . : _ - (at most 200)")
    if not CATEGORY.match(item["category"]):
        fail("'category' must be a lower-case name like command_injection")
    if len(item["title"]) > 300:
        fail("'title' is longer than 300 characters")
    cwe = item.get("cwe")
    if cwe is not None and (not isinstance(cwe, str) or not re.fullmatch(r"CWE-\d{1,5}", cwe)):
        fail("'cwe' must look like CWE-78")
    keywords = item.get("keywords", [])
    if not isinstance(keywords, list) or not all(isinstance(word, str) for word in keywords):
        fail("'keywords' must be a list of words")
    return {"key": item["key"], "category": item["category"], "cwe": cwe, "title": item["title"].strip(),
            "insight": item["insight"].strip(), "keywords": keywords}


# ---- storing ------------------------------------------------------------------------


def import_entries(source: str, entries: list[dict], progress: Callable[[int], None] | None = None) -> dict:
    """Add or update entries by key; ``progress(n)`` after each batch of n. Counts of what changed."""
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    for start in range(0, len(entries), BATCH):
        batch = entries[start:start + BATCH]
        with transaction():
            _store(source, batch, counts)
        if progress is not None:
            progress(len(batch))
    return counts


def _store(source: str, batch: list[dict], counts: dict) -> None:
    existing = {row.key: row for row in KnowledgeEntry.select().where(
        KnowledgeEntry.key.in_([entry["key"] for entry in batch]))}
    now = utcnow()
    for entry in batch:
        values = {"source": source, "category": entry["category"], "cwe": entry["cwe"], "title": entry["title"],
                  "insight": entry["insight"], "keywords": _indexed_keywords(entry)}
        row = existing.get(entry["key"])
        if row is None:
            KnowledgeEntry.create(key=entry["key"], created_at=now, updated_at=now, **values)
            counts["added"] += 1
        elif any(getattr(row, name) != value for name, value in values.items()):
            KnowledgeEntry.update(updated_at=now, **values).where(KnowledgeEntry.id == row.id).execute()
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1


def _indexed_keywords(entry: dict) -> str:
    words = [*entry["keywords"], entry["category"].replace("_", " ")]
    if entry["cwe"]:
        words.append(_cwe_word(entry["cwe"]))
    return " ".join(words)


def _cwe_word(cwe: str) -> str:
    # One token on both databases ("CWE-78" would split into "cwe" and "78").
    return "cwe" + cwe.split("-", 1)[1]


def read_import(path) -> tuple[str, list[dict]]:
    """``read_entries`` for an operator's file, whose entries must not pass for the built-in ones."""
    source, entries = read_entries(path)
    if source == BUILTIN_SOURCE:
        raise KnowledgeFileError(f"the source name {BUILTIN_SOURCE!r} is reserved for the built-in entries")
    return source, entries


def import_file(path, progress: Callable[[int], None] | None = None) -> dict:
    return import_entries(*read_import(path), progress)


def load_builtin() -> dict:
    """Put the shipped entries in the database: idempotent, and entries no longer shipped go."""
    _, entries = read_entries(BUILTIN_FILE)
    counts = import_entries(BUILTIN_SOURCE, entries)
    shipped = [entry["key"] for entry in entries]
    with transaction():
        counts["removed"] = KnowledgeEntry.delete().where(
            (KnowledgeEntry.source == BUILTIN_SOURCE) & KnowledgeEntry.key.not_in(shipped)).execute()
    return counts


def count() -> int:
    return KnowledgeEntry.select().count()


# ---- searching ----------------------------------------------------------------------


def query_terms(texts) -> list[str]:
    """Distinct informative words of the texts, CWE ids as one word each; no search syntax survives."""
    if isinstance(texts, str):
        texts = [texts]
    seen: dict[str, None] = {}
    for text in texts:
        text = str(text)[:20_000]
        for number in CWE.findall(text):
            seen.setdefault(f"cwe{number}", None)
        for word in WORD.findall(CWE.sub(" ", text).lower()):
            if len(word) > 2 and word not in STOP_WORDS and not word.isdigit():
                seen.setdefault(word, None)
    return list(seen)[:MAX_QUERY_TERMS]


def search(texts, limit: int = 3) -> list[dict]:
    """The entries most relevant to the texts, best first, each with a relevance score in 0..1.

    The database ranks candidates (BM25 on SQLite, ts_rank on PostgreSQL);
    the score is ``coverage × (0.5 + 0.5 × rank / best rank)``, where coverage
    is the share of query words the entry contains (counted against at least
    four and at most eight words), so it means the same on both databases
    (docs/review.md).
    """
    terms = query_terms(texts)
    if not terms or limit <= 0:
        return []
    rows = _candidates(terms, max(limit * 3, 10))
    if not rows:
        return []
    best = max(rank for *_, rank in rows) or 1.0
    scored = []
    for source, category, cwe, title, insight, keywords, rank in rows:
        relevance = _coverage(terms, f"{title} {keywords} {insight}") * (0.5 + 0.5 * rank / best)
        scored.append({"knowledge_source": source, "relevance_score": round(min(relevance, 1.0), 3),
                       "insight": f"{title}: {insight}", "cwe": cwe, "category": category})
    scored.sort(key=lambda item: -item["relevance_score"])
    return scored[:limit]


def _candidates(terms: list[str], limit: int) -> list[tuple]:
    columns = "e.source, e.category, e.cwe, e.title, e.insight, e.keywords"
    if is_postgres():
        sql = (f"SELECT {columns}, ts_rank(e.search, q) FROM review_kb_entry e, to_tsquery('english', %s) q "
               "WHERE e.search @@ q ORDER BY ts_rank(e.search, q) DESC, e.id LIMIT %s")
        params = [" | ".join(terms), limit]
    else:
        # bm25() is negative, lower for better matches; titles and keywords weigh three times the text.
        sql = (f"SELECT {columns}, -bm25(review_kb_fts, 3.0, 3.0, 1.0) FROM review_kb_fts "
               "JOIN review_kb_entry e ON e.id = review_kb_fts.rowid WHERE review_kb_fts MATCH ? "
               "ORDER BY bm25(review_kb_fts, 3.0, 3.0, 1.0), e.id LIMIT ?")
        params = [" OR ".join(f'"{term}"' for term in terms), limit]
    return [(*row[:6], float(row[6] or 0.0)) for row in database.execute_sql(sql, params)]


def _coverage(terms: list[str], text: str) -> float:
    prefixes = {word[:PREFIX] for word in WORD.findall(text.lower())}
    matched = sum(1 for term in terms if term[:PREFIX] in prefixes)
    return min(1.0, matched / max(MIN_COVERAGE_TERMS, min(len(terms), FULL_COVERAGE_TERMS)))
