"""Test databases: a SQLite file per test, or a fresh PostgreSQL schema per test."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from urllib.parse import quote, urlparse

import psycopg2

POSTGRES_URL = os.environ.get("LOCKGATE_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("LOCKGATE_TEST_REDIS_URL", "")

BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


def _pg_connect():
    parsed = urlparse(POSTGRES_URL)
    conn = psycopg2.connect(
        dbname=parsed.path.lstrip("/") or "postgres",
        user=parsed.username,
        password=parsed.password,
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 5432,
    )
    conn.autocommit = True
    return conn


@contextmanager
def database_url(backend: str, tmp_dir):
    """Yield a database URL nobody else uses; PostgreSQL gets its own schema, dropped after."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_dir}/lockgate.db"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = _pg_connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{schema}"')
        separator = "&" if "?" in POSTGRES_URL else "?"
        yield f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with conn.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()
