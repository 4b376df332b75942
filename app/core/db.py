"""The database: peewee on SQLite (WAL) by default, PostgreSQL when configured.

Under gevent a SQLite writer must not hold the hub: SQLite's own busy
handler sleeps in C and would freeze every greenlet of the worker, so the
busy timeout is tiny and waits happen in ``time.sleep`` (cooperative once
gevent has patched the process).
"""

from __future__ import annotations

import sqlite3
import time
import weakref
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlparse

from peewee import DatabaseProxy, Model, OperationalError
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

database = DatabaseProxy()

BUSY_RETRY_SECONDS = 30.0
# How long a request waits for a pooled connection when all are in use.
POOL_WAIT_SECONDS = 10


def utcnow() -> datetime:
    """Naive UTC: what both SQLite and PostgreSQL columns store here."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _is_busy(exc: Exception) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text


def _retry_busy(run):
    delay, deadline = 0.002, time.monotonic() + BUSY_RETRY_SECONDS
    while True:
        try:
            return run()
        except (OperationalError, sqlite3.OperationalError) as exc:
            if not _is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


class SqliteDatabase(PooledSqliteDatabase):
    """Write transactions take the write lock up front (BEGIN IMMEDIATE).

    A deferred transaction that reads and then writes can fail with a busy
    error that no retry resolves; taking the lock first avoids that.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lock_type = "IMMEDIATE"

    def _connect(self):
        # Opening sets WAL mode, which needs a moment of exclusive access: when
        # several workers start on a new file at once, all but one are told "busy".
        return _retry_busy(lambda: super(SqliteDatabase, self)._connect())

    def execute_sql(self, sql, params=None):
        return _retry_busy(lambda: super(SqliteDatabase, self).execute_sql(sql, params))

    def begin(self, lock_type=None):
        return _retry_busy(lambda: super(SqliteDatabase, self).begin(lock_type))


class PostgresqlDatabase(PooledPostgresqlDatabase):
    pass


def _gevent_wait(conn, timeout=None):
    """psycopg2 wait callback that yields to the gevent hub instead of blocking."""
    import psycopg2.extensions as ext
    from gevent.socket import wait_read, wait_write

    while True:
        state = conn.poll()
        if state == ext.POLL_OK:
            return
        if state == ext.POLL_READ:
            wait_read(conn.fileno(), timeout=timeout)
        elif state == ext.POLL_WRITE:
            wait_write(conn.fileno(), timeout=timeout)
        else:
            raise OperationalError(f"unexpected psycopg2 poll state {state}")


def _make_postgres_cooperative():
    try:
        from gevent import monkey
    except ImportError:
        return
    if monkey.is_module_patched("socket"):
        import psycopg2.extensions

        psycopg2.extensions.set_wait_callback(_gevent_wait)


def make_database(url: str):
    parsed = urlparse(url)
    if parsed.scheme in ("postgres", "postgresql"):
        _make_postgres_cooperative()
        options = dict(parse_qsl(parsed.query))
        return PostgresqlDatabase(
            (parsed.path or "/").lstrip("/") or "postgres",
            user=parsed.username,
            password=parsed.password,
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 5432,
            max_connections=int(options.pop("max_connections", 32)),
            stale_timeout=300,
            timeout=POOL_WAIT_SECONDS,
            **options,
        )
    if parsed.scheme == "sqlite":
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else parsed.path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return SqliteDatabase(
            path,
            max_connections=64,
            stale_timeout=300,
            timeout=POOL_WAIT_SECONDS,
            check_same_thread=False,
            pragmas={
                "journal_mode": "wal",
                "synchronous": "normal",
                "foreign_keys": 1,
                "busy_timeout": 5,
                "cache_size": -16000,
            },
        )
    raise ValueError(f"unsupported database url scheme: {parsed.scheme!r}")


def is_postgres() -> bool:
    return isinstance(database.obj, PostgresqlDatabase)


def init_database(url: str):
    db = make_database(url)
    database.initialize(db)
    return db


@contextmanager
def transaction():
    """A write transaction (BEGIN IMMEDIATE on SQLite)."""
    with database.atomic():
        yield


@contextmanager
def connection():
    """A pooled connection for work outside a request (background loops, CLI)."""
    opened = database.is_closed()
    if opened:
        database.connect(reuse_if_open=True)
    try:
        yield
    finally:
        if opened and not database.in_transaction():
            database.close()


def advisory_lock(key: int):
    """Serialise a transaction with others taking the same key (PostgreSQL only).

    SQLite needs nothing: BEGIN IMMEDIATE already admits one writer.
    """
    if is_postgres():
        database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (key,))


def prepared(build):
    """A hot query whose SQL is built once per database and run with new parameters.

    For small queries the ORM spends longer writing the SQL than the database
    spends running it. ``build()`` returns the query with placeholder values
    in the places of the parameters; ``run(*params)`` returns the cursor.
    """
    statements = weakref.WeakKeyDictionary()  # database -> SQL in its dialect

    def run(*params):
        db = database.obj
        sql = statements.get(db)
        if sql is None:
            sql = statements[db] = build().sql()[0]
        return database.execute_sql(sql, params)

    return run


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False
