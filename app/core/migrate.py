"""Applies the forward-only migrations in ``migrations/``.

Several workers may start at once: the whole run is one transaction that
takes the database's write lock (SQLite) or an advisory lock (PostgreSQL),
so exactly one of them applies each migration and the others see it done.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

import migrations
from app.core.db import advisory_lock, database, utcnow
from app.core.models import SchemaMigration

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
