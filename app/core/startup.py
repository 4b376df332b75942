"""Start-up checks of the data directory and the SQLite database file.

A service that cannot write its data directory, or whose database file has
gone, must stop with one line saying so instead of tracebacks or, worse, a new
empty database. A record in the data directory (``database.json``) names the
SQLite file the service uses and its device and inode: a file recorded there
that is missing was lost, not never created: nothing creates it again but
``flask db upgrade --create-empty``, an operator's explicit choice (a plain
``db upgrade``, run before every start by ``make run`` and the systemd unit,
refuses like the service does). gunicorn's master runs these checks before forking, so this
module imports neither Flask nor peewee.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

RECORD_NAME = "database.json"


class StartupError(Exception):
    """A problem that stops the service with a one-line message, never a traceback."""


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL; None for PostgreSQL and in-memory databases."""
    parsed = urlparse(url)
    if parsed.scheme != "sqlite":
        return None
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else parsed.path
    return None if path in ("", ":memory:") else Path(path)


def check_writable_directory(path: Path, role: str) -> None:
    """Create ``path`` if needed and prove a file can be written in it (root ignores modes, so try)."""
    if path.exists() and not path.is_dir():
        raise StartupError(f"{role} {path} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"{role} {path} cannot be created: {exc.strerror or exc}") from None
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise StartupError(f"{role} {path} is not writable: {exc.strerror or exc}") from None


def check_directories(settings) -> None:
    check_writable_directory(settings.data_dir, "data directory")
    path = sqlite_path(settings.database_url)
    if path is not None:
        check_writable_directory(path.parent, "database directory")
        if path.exists() and not path.is_file():
            raise StartupError(f"database {path} is not a regular file")


def file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def recorded_identity(data_dir: Path, path: Path) -> tuple[int, int] | None:
    """The device and inode recorded for ``path``; None when this data directory never served it."""
    try:
        record = json.loads((data_dir / RECORD_NAME).read_text(encoding="utf-8"))
        if record["path"] != str(path.resolve()):
            return None
        return (int(record["device"]), int(record["inode"]))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        raise StartupError(f"{data_dir / RECORD_NAME} is damaged: delete it to accept the current database") from None


def record_identity(data_dir: Path, path: Path, identity: tuple[int, int]) -> None:
    """Write the record atomically: workers starting together may all write it."""
    text = json.dumps({"path": str(path.resolve()), "device": identity[0], "inode": identity[1]})
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=f".{RECORD_NAME}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    os.replace(tmp, data_dir / RECORD_NAME)


def missing_database_message(path: Path) -> str:
    return (f"database {path} is missing although this data directory used it before: restore it from a backup, "
            "or run `flask --app wsgi db upgrade --create-empty` to start an empty one")


def check_service_start(settings) -> None:
    """gunicorn's master, before forking: directories usable, and no database lost since the last run.

    A service start accepts the database file as it finds it (a file restored
    from a backup has a new inode): workers then compare against this record.
    """
    check_directories(settings)
    path = sqlite_path(settings.database_url)
    if path is None:
        return
    identity = file_identity(path)
    if identity is not None:
        record_identity(settings.data_dir, path, identity)
    elif recorded_identity(settings.data_dir, path) is not None:
        raise StartupError(missing_database_message(path))
