"""Migrations, leases and SQLite start-up on the real database backends."""

import subprocess
import sys
from datetime import timedelta

from app.core import leases, migrate
from app.core.db import connection, database, utcnow
from app.core.models import Lease, SchemaMigration
from tests.support.server import ROOT

UPGRADE = "from app.core.db import init_database, connection; from app.core import migrate; " \
          "import sys; init_database(sys.argv[1]); c = connection(); c.__enter__(); " \
          "print(','.join(migrate.upgrade()))"


def test_concurrent_upgrades_apply_each_migration_once(db_url):
    processes = [subprocess.Popen([sys.executable, "-c", UPGRADE, db_url], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    outputs = [process.communicate(timeout=60) for process in processes]
    assert [process.returncode for process in processes] == [0] * 4, outputs
    applied = [name for out, _err in outputs for name in out.strip().split(",") if name]
    assert sorted(applied) == migrate.discover()  # each one, by exactly one process


def test_upgrade_is_idempotent_and_status_lists_all(app):
    with connection():
        assert migrate.upgrade() == []
        names = [name for name, applied_at in migrate.status() if applied_at]
        assert names == migrate.discover()
        assert SchemaMigration.select().count() == len(names)


def test_a_lease_has_one_holder_until_it_expires(app, monkeypatch):
    with connection():
        monkeypatch.setattr(leases, "OWNER", "host:1:a")
        monkeypatch.setattr(leases.os, "getpid", lambda: 1)
        assert leases.acquire("job", ttl=30)
        assert leases.acquire("job", ttl=30)  # renewal
        monkeypatch.setattr(leases, "OWNER", "host:1:b")
        assert not leases.acquire("job", ttl=30)
        Lease.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
        assert leases.acquire("job", ttl=30)  # the holder died: taken over
        assert Lease.get_by_id("job").owner == "host:1:b"


def test_opening_a_new_sqlite_file_waits_while_another_worker_writes(tmp_path):
    """Switching a new file to WAL answers "locked" at once while another connection writes:
    a worker starting next to one that is migrating must wait, not fail to boot."""
    import sqlite3
    import threading

    from app.core.db import make_database

    path = tmp_path / "fresh.db"
    writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    writer.execute("CREATE TABLE t (x INTEGER)")
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES (1)")
    outcome = []

    def open_database():
        db = make_database(f"sqlite:///{path}")
        try:
            db.connect()
            outcome.append(db.execute_sql("PRAGMA journal_mode").fetchone()[0])
            db.close()
        except Exception as exc:  # noqa: BLE001 - the assertion reports it
            outcome.append(exc)

    opener = threading.Thread(target=open_database)
    opener.start()
    opener.join(0.3)
    assert opener.is_alive()  # still waiting for the writer
    writer.execute("COMMIT")
    opener.join(10)
    assert outcome == ["wal"]


def test_the_health_ping_has_a_connection_of_its_own_and_replaces_a_broken_one(app):
    db = database.obj
    in_use, idle = dict(db._in_use), list(db._connections)
    db.ping()
    first = db._own_conn
    db.ping()
    assert db._own_conn is first  # kept between probes
    assert dict(db._in_use) == in_use and list(db._connections) == idle  # the pool is never touched
    first.close()  # as a database restart leaves it: broken while idle
    db.ping()
    assert db._own_conn is not first
