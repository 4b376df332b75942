"""Applies the forward-only migrations in ``migrations/``.

Several workers may start at once: the whole run is one transaction that
takes the database's write lock (SQLite) or an advisory lock (PostgreSQL),
so exactly one of them applies each migration and the others see it done.

Opening the database at start-up follows the rule of ``app.core.startup``: a
SQLite file this data directory used before and that has gone is not created
again at start-up; only ``flask db upgrade --create-empty`` (``accept_current_file``) does.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

import migrations
from app.core.db import DatabaseUnavailable, advisory_lock, connection, database, init_database, is_outage, utcnow
from app.core.models import SchemaMigration
from app.core.startup import missing_database_message, record_identity, recorded_identity, sqlite_path

MIGRATION_LOCK_KEY = 0x4C6B6D67  # arbitrary, fixed: "Lkmg"
NAME_PATTERN = re.compile(r"^m\d{4}_\w+$")


def discover() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules(migrations.__path__) if NAME_PATTERN.match(m.name)]
    return sorted(names)


def applied() -> dict:
    if not SchemaMigration.table_exists():
        return {}
    return {row.name: row.applied_at for row in SchemaMigration.select()}


def pending() -> list[str]:
    done = applied()
    return [name for name in discover() if name not in done]


def upgrade() -> list[str]:
    if not pending():
        return []
    ran = []
    with database.atomic():
        advisory_lock(MIGRATION_LOCK_KEY)
        database.create_tables([SchemaMigration], safe=True)
        done = applied()
        for name in discover():
            if name in done:
                continue
            module = importlib.import_module(f"migrations.{name}")
            module.upgrade(database.obj)
            SchemaMigration.create(name=name, applied_at=utcnow())
            ran.append(name)
    return ran


def status() -> list[tuple[str, object]]:
    done = applied()
    return [(name, done.get(name)) for name in discover()]


def open_database(settings) -> list[str]:
    """Open the configured database and apply pending migrations; the names of those applied.

    When the database cannot serve (its file lost, PostgreSQL down), the worker
    starts anyway and answers 503 until it can: a worker respawned during an
    outage must not take the whole service down by failing to boot.
    """
    path = sqlite_path(settings.database_url)
    expected = recorded_identity(settings.data_dir, path) if path is not None else None
    init_database(settings.database_url, create=expected is None, expected=expected)
    try:
        with connection():
            ran = upgrade()
    except Exception as exc:
        if not is_outage(exc):
            raise
        return []
    if path is not None and expected is None:
        record_identity(settings.data_dir, path, database.obj.expected)
    return ran


def accept_current_file(settings, create_empty: bool = False) -> None:
    """``db upgrade``: take the SQLite file as it is now (restored, moved), or create it, and record it.

    A file this data directory used before is created again only when ``create_empty`` says so.
    """
    path = sqlite_path(settings.database_url)
    if path is None:
        return
    if not path.exists() and not create_empty and recorded_identity(settings.data_dir, path) is not None:
        raise DatabaseUnavailable(missing_database_message(path))
    database.obj.accept_current_file()
    with connection():
        database.execute_sql("SELECT 1")
    record_identity(settings.data_dir, path, database.obj.expected)
