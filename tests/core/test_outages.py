"""Outages in process: a lost SQLite file, an unreachable database, a hung counter store, an unusable data directory."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import threading
import time

import peewee
import psycopg2
import psycopg2.errors
import pytest
from playhouse.pool import MaxConnectionsExceeded

from app import create_app
from app.core import ratelimit
from app.core.auth import create_token
from app.core.db import DatabaseUnavailable, connection, database, is_conflict, is_outage, unavailable_reason
from app.core.errors import ServiceUnavailable
from app.core.migrate import discover
from app.core.ratelimit import RateLimiter, RedisCounters
from app.core.settings import Settings, load_settings
from app.core.startup import RECORD_NAME, StartupError, check_directories, check_service_start
from tests.support.config import write_config


class HungServer:
    """A TCP server that accepts connections and never answers (a Redis that hangs); counts its connections."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.connections = 0
        self._held = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self._held.append(conn)  # kept open, never read nor answered

    def close(self):
        self.sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def hung():
    server = HungServer()
    yield server
    server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def sqlite_app(tmp_path, monkeypatch):
    """An app on a SQLite file in its data directory, as a default install has it."""
    monkeypatch.setenv("LOCKGATE_DATA_DIR", str(tmp_path / "data"))
    config = write_config(tmp_path / "lockgate.toml", {"logs": {"level": "info"}})
    monkeypatch.setenv("LOCKGATE_CONFIG", str(config))

    def build():
        return create_app(load_settings(config))

    return build


def token_for(scope="admin") -> dict:
    with connection():
        return {"Authorization": f"Bearer {create_token('outage', [scope])[1]}"}


def db_file(app):
    return app.extensions["lockgate"].settings.data_dir / "lockgate.db"


def remove_database(path):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.unlink(f"{path}{suffix}")


def invoke(app, *args):
    """A maintenance command as ``flask`` runs it: inside the application context."""
    with app.app_context():
        return app.test_cli_runner().invoke(args=list(args))


def assert_unavailable(response):
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.json["error"]["code"] == "service_unavailable"
    assert int(response.headers["Retry-After"]) >= 1


# ---- a SQLite file deleted or replaced while serving -----------------------------------------


def test_deleted_database_file_answers_503_and_is_not_recreated(sqlite_app):
    app = sqlite_app()
    client = app.test_client()
    headers = token_for()
    assert client.get("/api/v1/status", headers=headers).status_code == 200
    path = db_file(app)
    remove_database(path)

    assert_unavailable(client.get("/api/v1/status", headers=headers))
    assert_unavailable(client.post("/api/v1/sessions", headers=headers, json={"channel": "api", "user_id": "me"}))
    health = client.get("/api/v1/status/health")
    assert health.status_code == 503 and health.json == {"healthy": False}
    assert not path.exists()


def test_replaced_database_file_answers_503(sqlite_app, tmp_path):
    app = sqlite_app()
    client = app.test_client()
    headers = token_for()
    path = db_file(app)
    copy = tmp_path / "copy.db"
    shutil.copyfile(path, copy)
    os.replace(copy, path)  # the same content under a new inode: not the file this worker opened

    assert_unavailable(client.get("/api/v1/status", headers=headers))
    assert client.get("/api/v1/status/health").status_code == 503


def test_a_worker_starting_after_the_loss_does_not_create_a_database(sqlite_app):
    first = sqlite_app()
    path = db_file(first)
    remove_database(path)

    second = sqlite_app()  # a respawned worker
    assert second.extensions["lockgate"].migrations_applied == []
    assert second.test_client().get("/api/v1/status/health").status_code == 503
    assert not path.exists()


def test_a_service_start_refuses_a_lost_database_in_one_line(sqlite_app):
    app = sqlite_app()
    settings = app.extensions["lockgate"].settings
    check_service_start(settings)  # the file is there: accepted
    remove_database(db_file(app))
    with pytest.raises(StartupError) as caught:
        check_service_start(settings)
    message = str(caught.value)
    assert "\n" not in message and str(db_file(app)) in message and "db upgrade" in message


def test_a_service_start_accepts_a_restored_file(sqlite_app, tmp_path):
    app = sqlite_app()
    path = db_file(app)
    headers = token_for()
    backup = tmp_path / "backup.db"
    with connection():
        database.execute_sql(f"VACUUM INTO '{backup}'")
    remove_database(path)
    os.replace(backup, path)

    check_service_start(app.extensions["lockgate"].settings)  # the master of the restarted service
    restarted = sqlite_app()
    assert restarted.test_client().get("/api/v1/status", headers=headers).status_code == 200


def test_db_upgrade_reports_what_a_fresh_install_applied(sqlite_app):
    app = sqlite_app()
    result = invoke(app, "db", "upgrade")
    assert result.exit_code == 0, result.output
    assert result.output.split() == [word for name in discover() for word in ("applied", name)]

    again = invoke(sqlite_app(), "db", "upgrade")
    assert again.output.strip() == "database is up to date"


def test_only_db_upgrade_create_empty_replaces_a_lost_database(sqlite_app):
    path = db_file(sqlite_app())
    remove_database(path)

    app = sqlite_app()
    refused = invoke(app, "auth", "list")
    assert refused.exit_code == 1
    assert "Traceback" not in refused.output and "missing" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    assert not path.exists()

    # A plain `db upgrade` (run before every start by `make run` and the systemd unit) refuses too.
    plain = invoke(app, "db", "upgrade")
    assert plain.exit_code == 1 and "--create-empty" in plain.output and not path.exists()

    created = invoke(app, "db", "upgrade", "--create-empty")
    assert created.exit_code == 0, created.output
    assert created.output.split()[:2] == ["applied", discover()[0]]
    assert path.exists()
    assert sqlite_app().test_client().get("/api/v1/status/health").status_code == 200


def test_a_damaged_record_is_one_line(sqlite_app):
    app = sqlite_app()
    settings = app.extensions["lockgate"].settings
    (settings.data_dir / RECORD_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(StartupError, match=RECORD_NAME):
        sqlite_app()
    check_service_start(settings)  # a service start takes the file as it is and rewrites the record
    assert sqlite_app().test_client().get("/api/v1/status/health").status_code == 200


# ---- an unreachable database --------------------------------------------------------------------


def test_unreachable_postgresql_answers_503_on_every_route(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCKGATE_DATA_DIR", str(tmp_path / "data"))
    url = f"postgresql://lockgate@127.0.0.1:{closed_port()}/lockgate"
    app = create_app(Settings(tmp_path / "absent.toml", overrides={"database.url": url}))
    client = app.test_client()
    headers = {"Authorization": f"Bearer lgt_{'0' * 16}_{'x' * 43}"}  # well formed: it must be looked up
    for method, path in [("GET", "/api/v1/status"), ("GET", "/api/v1/sessions"), ("POST", "/api/v1/sessions"),
                         ("GET", "/api/v1/config"), ("GET", "/api/v1/logs")]:
        assert_unavailable(client.open(path, method=method, headers=headers, json={}))
    assert client.get("/api/v1/status/health").status_code == 503


def test_connection_failures_are_outages_and_wrong_statements_are_not(app, backend):
    port = closed_port()
    with pytest.raises(psycopg2.OperationalError) as refused:
        psycopg2.connect(host="127.0.0.1", port=port, user="x", dbname="x", connect_timeout=2)
    assert is_outage(refused.value)
    wrapped = peewee.OperationalError(refused.value, *refused.value.args)  # as peewee wraps it
    assert is_outage(wrapped) and is_outage(peewee.OperationalError(wrapped, *wrapped.args))
    assert is_outage(peewee.InterfaceError(psycopg2.InterfaceError("connection already closed")))
    assert not is_outage(peewee.OperationalError("Connection already opened."))  # peewee's own misuse error
    assert is_outage(DatabaseUnavailable("gone"))
    with sqlite3.connect(":memory:") as conn, pytest.raises(sqlite3.OperationalError) as syntax:
        conn.execute("SELEC 1")
    assert not is_outage(syntax.value)  # a wrong statement, not a broken file
    assert is_outage(sqlite3.OperationalError("unable to open database file"))

    with connection(), pytest.raises(peewee.DatabaseError) as wrong:
        database.execute_sql("SELECT * FROM no_such_table")
    assert not is_outage(wrong.value)
    assert not is_outage(RuntimeError("unable to open database file"))


def test_a_wrong_statement_stays_a_500(app, auth):
    @app.route("/api/v1/wrong-sql")
    def wrong_sql():
        database.execute_sql("SELECT * FROM no_such_table")

    response = app.test_client().get("/api/v1/wrong-sql", headers=auth("read"))
    assert response.status_code == 500 and response.json["error"]["code"] == "internal_error"


def test_a_transaction_rolled_back_for_a_concurrent_one_answers_503_to_send_again(app, auth, backend, caplog):
    @app.route("/api/v1/collided")
    def collided():
        if backend == "postgresql":  # the server's own error, through the driver and peewee
            database.execute_sql("DO $$ BEGIN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$")
        deadlock = psycopg2.errors.DeadlockDetected("deadlock detected")
        raise peewee.OperationalError(deadlock, *deadlock.args)  # as peewee wraps it

    with caplog.at_level("ERROR", logger="http"):
        response = app.test_client().get("/api/v1/collided", headers=auth("read"))
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    assert response.json["error"]["code"] == "service_unavailable"
    assert "send it again" in response.json["error"]["message"]
    assert any("rolled back for a concurrent one" in record.getMessage() and record.exc_info
               for record in caplog.records)
    serialisation = psycopg2.errors.SerializationFailure("could not serialize access")
    assert is_conflict(peewee.OperationalError(serialisation, *serialisation.args))
    assert not is_outage(serialisation) and not is_conflict(RuntimeError("deadlock detected"))
    # What a background loop or a stream logs as one line rather than a trace:
    assert unavailable_reason(MaxConnectionsExceeded("Exceeded maximum connections.")) == "no database connection free"
    assert unavailable_reason(DatabaseUnavailable("gone")) == "database unavailable (gone)"
    assert unavailable_reason(serialisation) is None


# ---- a counter store that hangs -----------------------------------------------------------------


def limiter_on(url: str, tmp_path, policy: str = "allow") -> RateLimiter:
    settings = Settings(tmp_path / "absent.toml", overrides={"rate_limits.on_storage_error": policy})
    return RateLimiter(RedisCounters(url, timeout=0.25), settings)


def timed(fn):
    started = time.monotonic()
    try:
        return fn(), time.monotonic() - started
    except ServiceUnavailable as exc:
        return exc, time.monotonic() - started


def test_a_hung_redis_costs_one_bounded_timeout_then_nothing_while_the_breaker_is_open(hung, tmp_path):
    rl = limiter_on(hung.url, tmp_path)
    decision, first = timed(lambda: rl.hit("default", "token:a"))
    assert decision is None  # allowed, uncounted
    assert 0.2 <= first < 0.75, first
    assert hung.connections == 1

    later = [timed(lambda: rl.hit("default", "token:a")) for _ in range(50)]
    assert all(decision is None for decision, _ in later)
    assert sum(elapsed for _, elapsed in later) < 0.25
    assert hung.connections == 1  # the breaker kept every later request away from Redis
    assert rl.report() == {"on_storage_error": "allow", "storage_errors": 51, "storage_ok": False}


def test_the_breaker_tries_the_store_again_after_a_while(hung, tmp_path, monkeypatch):
    monkeypatch.setattr(ratelimit, "STORAGE_RETRY_SECONDS", 0.3)
    rl = limiter_on(hung.url, tmp_path)
    rl.hit("default", "token:a")
    time.sleep(0.35)
    _, elapsed = timed(lambda: rl.hit("default", "token:a"))
    assert elapsed >= 0.2 and hung.connections == 2


def test_deny_answers_503_with_retry_after(hung, tmp_path):
    rl = limiter_on(hung.url, tmp_path, policy="deny")
    for _ in range(3):
        refused, _elapsed = timed(lambda: rl.hit("default", "token:a"))
        assert isinstance(refused, ServiceUnavailable)
        assert refused.status == 503 and refused.code == "service_unavailable"
        assert 1 <= int(refused.headers["Retry-After"]) <= 5
    assert rl.report()["storage_errors"] == 3


def test_a_failure_is_logged_once_at_warn(hung, tmp_path, caplog):
    rl = limiter_on(hung.url, tmp_path)
    with caplog.at_level("WARNING", logger="http::ratelimit"):
        for _ in range(5):
            rl.hit("default", "token:a")
    warnings = [r for r in caplog.records if r.name == "http::ratelimit"]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING"
    assert "allowed uncounted" in warnings[0].getMessage()


def test_status_reports_the_choice_and_the_count(app_factory, auth, hung):
    app = app_factory({"redis": {"url": hung.url, "timeout_secs": 0.25}, "rate_limits": {"on_storage_error": "allow"}})
    with connection():
        headers = {"Authorization": f"Bearer {create_token('status', ['read'])[1]}"}
    client = app.test_client()
    client.get("/api/v1/status", headers=headers)
    body = client.get("/api/v1/status", headers=headers).json
    assert body["rate_limits"] == {"on_storage_error": "allow", "storage_errors": 2, "storage_ok": False}
    assert body["status"] == "healthy" and "version" in body and "uptime_secs" in body


def test_on_storage_error_accepts_only_allow_or_deny(tmp_path):
    from app.core.settings import ConfigError

    path = write_config(tmp_path / "bad.toml", {"rate_limits": {"on_storage_error": "maybe"}})
    with pytest.raises(ConfigError, match="on_storage_error"):
        load_settings(path)


# ---- an unusable data directory -----------------------------------------------------------------


@pytest.mark.parametrize("layout,expected", [
    ("file", "is not a directory"),
    ("under_file", "cannot be created: Not a directory"),
])
def test_an_unusable_data_directory_is_one_line(tmp_path, monkeypatch, layout, expected):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory is expected")
    target = blocker if layout == "file" else blocker / "data"
    monkeypatch.setenv("LOCKGATE_DATA_DIR", str(target))
    settings = Settings(tmp_path / "absent.toml")
    with pytest.raises(StartupError) as caught:
        check_directories(settings)
    assert str(caught.value) == f"data directory {target} {expected}"
    with pytest.raises(StartupError):
        create_app(settings)
