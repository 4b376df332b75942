"""The database: peewee on SQLite (WAL) by default, PostgreSQL when configured.

Under gevent a SQLite writer must not hold the hub: SQLite's own busy
handler sleeps in C and would freeze every greenlet of the worker, so the
busy timeout is tiny and waits happen in ``time.sleep`` (cooperative once
gevent has patched the process).

A worker remembers the device and inode of the SQLite file it opened and
checks them at every connection checkout (one ``os.stat``): a file deleted or
replaced under a running service makes requests answer 503 instead of
writing to an unlinked inode, and connections never create a missing file
unless this database is allowed to (see ``app.core.startup``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlparse

import click
from peewee import DatabaseProxy, InterfaceError, Model, OperationalError, _WriteQuery
from playhouse.pool import MaxConnectionsExceeded, PooledDatabase, PooledPostgresqlDatabase, PooledSqliteDatabase

from app.core.startup import missing_database_message, sqlite_path

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


class DatabaseUnavailable(click.ClickException):
    """The database cannot serve: requests answer 503, and a maintenance command prints this one line."""


# SQLite errors that say the file cannot be used, as opposed to a wrong statement.
SQLITE_OUTAGES = ("unable to open database", "disk i/o error", "readonly database", "database is locked",
                  "database or disk is full", "malformed")
# PostgreSQL error classes of the connection, the server's resources and its shutdown.
POSTGRES_OUTAGE_CODES = ("08", "53", "57P")


def _driver_error(exc: BaseException) -> BaseException:
    while getattr(exc, "orig", None) is not None:
        exc = exc.orig  # peewee keeps the exception it wraps, sometimes a peewee one wrapping the driver's
    return exc


def is_conflict(exc: BaseException) -> bool:
    """Whether PostgreSQL rolled the transaction back for a concurrent one (a deadlock, a serialisation
    failure): nothing of it was written, and the same request sent again can succeed."""
    exc = _driver_error(exc)
    if type(exc).__module__.partition(".")[0] != "psycopg2":
        return False
    import psycopg2.extensions

    return isinstance(exc, psycopg2.extensions.TransactionRollbackError)


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is unreachable or unusable (503), not that a query is wrong (500)."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    exc = _driver_error(exc)
    if isinstance(exc, sqlite3.OperationalError):
        return any(text in str(exc).lower() for text in SQLITE_OUTAGES)
    if type(exc).__module__.partition(".")[0] != "psycopg2":
        return False
    import psycopg2

    if isinstance(exc, psycopg2.InterfaceError):
        return True  # the connection is closed
    if not isinstance(exc, psycopg2.OperationalError):
        return False
    if is_conflict(exc):
        return False
    # A connection that failed or broke has no SQLSTATE: the server never answered.
    return exc.pgcode is None or exc.pgcode.startswith(POSTGRES_OUTAGE_CODES)


def unavailable_reason(exc: BaseException) -> str | None:
    """Why the database cannot serve right now (no pooled connection free, or an outage), for a
    one-line log; None when ``exc`` is something else, which deserves its trace."""
    if isinstance(exc, MaxConnectionsExceeded):
        return "no database connection free"
    if is_outage(exc):
        return f"database unavailable ({first_line(exc)})"
    return None


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


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


_writes = 0


def local_writes() -> int:
    """How many ORM writes (insert, update, delete; prepared ones too) this process has run: a cheap
    sign that what it read before may have changed. Raw SQL (rate counters, locks, migrations) is not counted."""
    return _writes


def _note_write() -> None:
    global _writes
    _writes += 1


class _CountsWrites:
    def execute(self, query, **context_options):
        if isinstance(query, _WriteQuery):
            _note_write()
        return super().execute(query, **context_options)


class _OwnConnection:
    """``ping()`` and ``read_now()``: short reads on a connection this process keeps for them alone.

    A probe queued behind a busy pool would wait up to ``POOL_WAIT_SECONDS`` and
    call a healthy database down, and a checkout costs more than a short query.
    Greenlets take turns on the connection; one that broke while idle (a database
    restarted since) is replaced once before the read fails.
    """

    def __init__(self, *args, **kwargs):
        # Made with the database, once gevent has patched threading: a greenlet may yield holding it.
        self._own_lock = threading.Lock()
        self._own_conn = self._own_pid = None
        super().__init__(*args, **kwargs)

    def ping(self) -> None:
        """The database answers a trivial query; raises if it does not."""
        with self._own_lock:
            self._read_own("SELECT 1", ())

    def read_now(self, sql: str, params: tuple) -> list[tuple]:
        """The rows of a short read outside any transaction; on a pooled connection while another greenlet
        is reading on this process's own (PostgreSQL reads yield), rather than wait for it."""
        if not self._own_lock.acquire(blocking=False):
            return self.execute_sql(sql, params).fetchall()
        try:
            return self._read_own(sql, params)
        finally:
            self._own_lock.release()

    def _read_own(self, sql: str, params: tuple) -> list[tuple]:
        self._before_checkout()
        fresh = self._own_conn is None or self._own_pid != os.getpid()
        while True:
            if fresh:
                self._drop_own_connection()
                # The driver's own connect, outside the pool's bookkeeping and limit.
                self._own_conn, self._own_pid = super(PooledDatabase, self)._connect(), os.getpid()
            try:
                return _retry_busy(lambda: self._fetch_all(self._own_conn, sql, params))
            except Exception:
                self._drop_own_connection()
                if fresh:
                    raise
                fresh = True

    @staticmethod
    def _fetch_all(conn, sql: str, params: tuple) -> list[tuple]:
        cursor = conn.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()
        finally:
            cursor.close()

    def _drop_own_connection(self) -> None:
        conn, self._own_conn = self._own_conn, None
        if conn is not None and self._own_pid == os.getpid():
            try:
                conn.close()
            except Exception:
                pass  # already broken: it is being replaced

    def _before_checkout(self) -> None:
        pass


class SqliteDatabase(_CountsWrites, _OwnConnection, PooledSqliteDatabase):
    """Write transactions take the write lock up front (BEGIN IMMEDIATE).

    A deferred transaction that reads and then writes can fail with a busy
    error that no retry resolves; taking the lock first avoids that.

    ``expected`` is the (device, inode) the file must have; unknown, the first
    checkout that finds the file remembers it. A missing file is created only
    while nothing is expected and ``create`` allows it.
    """

    def __init__(self, path: Path, *args, create: bool = True, expected: tuple[int, int] | None = None, **kwargs):
        self.path = path
        self.expected = expected
        self.create = create and expected is None
        super().__init__(self._uri(), *args, uri=True, **kwargs)
        self._lock_type = "IMMEDIATE"

    def _uri(self) -> str:
        # mode=rw: opening a missing file fails instead of creating an empty database.
        return f"file:{quote(str(self.path))}?mode={'rwc' if self.create else 'rw'}"

    def _before_checkout(self) -> None:
        self.check_file()

    def _connect(self):
        self.check_file()
        # Opening sets WAL mode, which needs a moment of exclusive access: when
        # several workers start on a new file at once, all but one are told "busy".
        conn = _retry_busy(lambda: super(SqliteDatabase, self)._connect())
        if self.expected is None:
            self.check_file()  # just created: remember it, and never create it again
        return conn

    def check_file(self) -> None:
        """Refuse a checkout when the file is gone or is not the one this worker opened."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            if self.create:
                return  # the first start: this connection creates it
            raise DatabaseUnavailable(missing_database_message(self.path)) from None
        identity = (st.st_dev, st.st_ino)
        if self.expected is None:
            self.expected, self.create = identity, False
            self.database = self._uri()
        elif identity != self.expected:
            raise DatabaseUnavailable(
                f"database {self.path} was replaced by another file while in use: restart the service to "
                "use the new file, or run `flask --app wsgi db upgrade` to accept it")

    def accept_current_file(self) -> None:
        """Forget what was expected: use the file as it is now, or create it if missing (``db upgrade``)."""
        self.close_all()
        self.expected, self.create = None, True
        self.database = self._uri()

    def execute_sql(self, sql, params=None):
        return _retry_busy(lambda: super(SqliteDatabase, self).execute_sql(sql, params))

    def begin(self, lock_type=None):
        return _retry_busy(lambda: super(SqliteDatabase, self).begin(lock_type))


class PostgresqlDatabase(_CountsWrites, _OwnConnection, PooledPostgresqlDatabase):
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


def make_database(url: str, create: bool = True, expected: tuple[int, int] | None = None):
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
        path = sqlite_path(url)
        if path is None:
            raise ValueError(f"not a SQLite file URL: {url!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteDatabase(
            path,
            create=create,
            expected=expected,
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


def init_database(url: str, create: bool = True, expected: tuple[int, int] | None = None):
    """``create`` and ``expected`` apply to SQLite files (see ``SqliteDatabase``)."""
    db = make_database(url, create, expected)
    database.initialize(db)
    return db


_commit_hooks = threading.local()


@contextmanager
def transaction():
    """A write transaction (BEGIN IMMEDIATE on SQLite); nested ones are savepoints of the outermost."""
    if database.in_transaction():
        with database.atomic():
            yield
        return
    _commit_hooks.pending = []
    try:
        with database.atomic():
            yield
            while _commit_hooks.pending:
                _commit_hooks.pending.pop(0)()
    finally:
        _commit_hooks.pending = []


def before_commit(callback) -> None:
    """Run ``callback()`` as the last statements of the enclosing ``transaction()``.

    For writes that must take a lock held until commit: taken this late, it is
    held for the commit alone instead of for the whole transaction.
    """
    pending = getattr(_commit_hooks, "pending", None)
    if pending is None or not database.in_transaction():
        raise RuntimeError("before_commit() needs an open transaction()")
    pending.append(callback)


def release_connection() -> None:
    """Give this greenlet's pooled connection back, unless a transaction still needs it.

    The one place that returns connections: request teardown, turns that wait on
    a model, streams that wait on events, and ``connection()`` below.
    """
    if not database.is_closed() and not database.in_transaction():
        database.close()


@contextmanager
def connection():
    """A pooled connection for work outside a request (background loops, CLI)."""
    opened = database.is_closed()
    if opened:
        try:
            database.connect(reuse_if_open=True)
        except (OperationalError, InterfaceError) as exc:
            if not is_outage(exc):
                raise
            # One line for a maintenance command, not the driver's traceback.
            raise DatabaseUnavailable(f"database unavailable: {first_line(exc)}") from exc
    try:
        yield
    finally:
        if opened:
            release_connection()


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
    statement = _statements(build)

    def run(*params):
        sql, writes = statement()
        if writes:
            _note_write()
        return database.execute_sql(sql, params)

    return run


def prepared_read(build):
    """Like ``prepared``, for a short read that needs no transaction: ``run(*params)`` returns its rows,
    read on the process's own connection (``read_now``), so a request that needs nothing else
    from the database never checks one out of the pool."""
    statement = _statements(build)

    def run(*params):
        return database.obj.read_now(statement()[0], params)

    return run


def _statements(build):
    statements = weakref.WeakKeyDictionary()  # database -> (SQL in its dialect, whether it writes)

    def statement():
        db = database.obj
        found = statements.get(db)
        if found is None:
            query = build()
            found = statements[db] = (query.sql()[0], isinstance(query, _WriteQuery))
        return found

    return statement


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False
