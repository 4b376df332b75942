"""Every log record of the service is stored for ``/api/v1/logs``, in batches.

The handler only appends to an in-memory buffer; a background loop writes
the buffer with one multi-row INSERT every ``FLUSH_INTERVAL``, so a log line
never costs a database write on the request path.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
from datetime import UTC, datetime

from app.core import redaction
from app.core.background import on_stop, spawn_loop
from app.core.db import advisory_lock, connection, transaction
from app.core.models import LogEntry

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS = {"trace": TRACE, "debug": 10, "info": 20, "warn": 30, "error": 40}
LEVEL_NAMES = {value: name for name, value in LEVELS.items()}
LOGS_LOCK_KEY = 0x4C6B6C67
FLUSH_INTERVAL = 0.2
MAX_BUFFER = 20_000
MAX_MESSAGE = 8_000

current_session_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "current_session_id", default=None
)


def level_name(levelno: int) -> str:
    if levelno >= 40:
        return "error"
    if levelno >= 30:
        return "warn"
    if levelno >= 20:
        return "info"
    if levelno >= 10:
        return "debug"
    return "trace"


def module_name(logger_name: str) -> str:
    """PRX-style module names: ``agent::loop``; dotted names of libraries map onto them."""
    if "::" in logger_name:
        return logger_name
    name = logger_name.removeprefix("app.").replace(".", "::")
    return name or "root"


class SecretsFilter(logging.Filter):
    """Masks URL passwords and credential-like query values in a record before any handler writes it.

    Whatever a module logs (a hook URL with ``?token=``, an upstream error naming a URL), the stored
    logs, their streams and stderr never carry those secrets.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redaction.mask_text(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redaction.mask_text(record.exc_text)
        return True


class DatabaseHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self._buffer: list[dict] = []
        self._buffer_lock = threading.Lock()
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message = f"{message}\n{self.formatter_exception(record)}"
            entry = {
                "timestamp": datetime.fromtimestamp(record.created, UTC).replace(tzinfo=None),
                "level": LEVELS[level_name(record.levelno)],
                "module": module_name(record.name)[:200],
                "message": message[:MAX_MESSAGE],
                "session_id": getattr(record, "session_id", None) or current_session_id.get(),
            }
        except Exception:
            self.handleError(record)
            return
        with self._buffer_lock:
            if len(self._buffer) >= MAX_BUFFER:
                self._buffer.pop(0)
                self.dropped += 1
            self._buffer.append(entry)

    @staticmethod
    def formatter_exception(record) -> str:
        return record.exc_text or logging.Formatter().formatException(record.exc_info)

    def flush_to_database(self) -> int:
        with self._buffer_lock:
            batch, self._buffer = self._buffer, []
        if not batch:
            return 0
        try:
            with connection(), transaction():
                advisory_lock(LOGS_LOCK_KEY)
                for start in range(0, len(batch), 500):
                    LogEntry.insert_many(batch[start:start + 500]).execute()
        except Exception as exc:
            with self._buffer_lock:
                self._buffer = (batch + self._buffer)[-MAX_BUFFER:]
            sys.stderr.write(f"lockgate: could not store log records: {exc}\n")
            return 0
        return len(batch)


_handler: DatabaseHandler | None = None


def install(level: str = "info") -> DatabaseHandler:
    """Attach the storing handler to the root logger and start its flush loop (once per process)."""
    global _handler
    root = logging.getLogger()
    if _handler is None:
        secrets = SecretsFilter()
        _handler = DatabaseHandler()
        _handler.addFilter(secrets)
        root.addHandler(_handler)
        # Operators also see warnings and errors on stderr (gunicorn's log, the journal).
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter("[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"))
        console.addFilter(secrets)
        console.lockgate_console = True
        root.addHandler(console)
        spawn_loop("log-flush", lambda: FLUSH_INTERVAL, _handler.flush_to_database)
        on_stop(_handler.flush_to_database)
    set_level(level)
    # Query logging of the ORM would log its own log writes.
    logging.getLogger("peewee").setLevel(logging.INFO)
    return _handler


def uninstall() -> None:
    """Detach what ``install`` attached (its flush loop ends with ``background.reset``)."""
    global _handler
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler is _handler or getattr(handler, "lockgate_console", False):
            root.removeHandler(handler)
    _handler = None


def set_level(level: str) -> None:
    logging.getLogger().setLevel(LEVELS.get(level, logging.INFO))


def flush() -> None:
    if _handler is not None:
        _handler.flush_to_database()
