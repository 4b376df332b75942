"""Real gunicorn processes serving Lockgate, for the end-to-end tests and the benchmarks alike.

A server gets a temporary TOML config (``LOCKGATE_CONFIG``) and data directory
(``LOCKGATE_DATA_DIR``), listens on a free 127.0.0.1 port, and runs in its own
process group: stopping it, or failing to start it, kills every worker too, so
nothing outlives the test or benchmark that started it.
"""

from __future__ import annotations

import os
import runpy
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.request import urlopen

from tests.support.config import merge, write_config
from tests.support.databases import database_url as fresh_database_url
from tests.support.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]

# Session writes are limited to 10/s per token by default; tests that drive sessions send more.
RELAXED_LIMITS = {"rate_limits": {"sessions_write": "10000/s", "sessions_read": "10000/s", "default": "10000/s"}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def environment(env: dict):
    """This process's environment replaced by ``env`` for a moment (to read settings as a server would)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def gunicorn_settings(env: dict, conf_file: str = "gunicorn.conf.py") -> dict:
    """The settings a gunicorn config file computes under ``env``, before command-line overrides."""
    with environment(env):
        namespace = runpy.run_path(str(ROOT / conf_file))
    keys = ("bind", "worker_class", "workers", "worker_connections", "timeout", "graceful_timeout", "keepalive")
    return {key: namespace[key] for key in keys}


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (the workers of a gunicorn master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces: the fields after its closing parenthesis.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


class GunicornServer:
    """One gunicorn master and its workers.

    ``None`` for ``database_url``, ``workers``, ``log_level`` or ``graceful_timeout`` leaves that
    setting to the shipped defaults, as a plain deployment would have it; the test defaults log
    at debug (tests read their own requests back from the logs) and stop quickly.
    """

    def __init__(self, tmp_dir: Path, database_url: str | None = None, config: dict | None = None,
                 workers: int | None = 2, *, app: str = "wsgi:app", conf_file: str = "gunicorn.conf.py",
                 health_path: str = "/api/v1/status/health", log_level: str | None = "debug",
                 graceful_timeout: float | None = 10):
        self.dir = Path(tmp_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.app = app
        self.conf_file = conf_file
        self.health_path = health_path
        self.graceful_timeout = graceful_timeout
        base = {"gateway": {"host": "127.0.0.1", "port": self.port}}
        if database_url:
            base["database"] = {"url": database_url}
        if log_level:
            base["logs"] = {"level": log_level}
        self.config = merge(base, config)
        self.config_path = write_config(self.dir / "lockgate.toml", self.config)
        self.database_url = database_url or self._default_database_url()
        self.log_path = self.dir / "gunicorn.log"
        self.process: subprocess.Popen | None = None
        self._tokens: dict[tuple, str] = {}

    def _default_database_url(self) -> str:
        from app.core.settings import load_settings

        with environment(self.env):
            return load_settings(self.config_path).database_url

    @property
    def env(self) -> dict:
        env = dict(os.environ)
        env.update(LOCKGATE_CONFIG=str(self.config_path), LOCKGATE_DATA_DIR=str(self.dir / "data"))
        env.pop("LOCKGATE_STARTED_AT", None)
        return env

    @property
    def command(self) -> list[str]:
        command = [sys.executable, "-m", "gunicorn", "-c", self.conf_file, self.app,
                   "--bind", f"127.0.0.1:{self.port}"]
        if self.workers is not None:
            command += ["--workers", str(self.workers)]
        if self.graceful_timeout is not None:
            command += ["--graceful-timeout", str(self.graceful_timeout)]
        return command

    def settings(self) -> dict:
        """The gunicorn settings this server runs with: its config file, then its command line."""
        values = gunicorn_settings(self.env, self.conf_file)
        values["bind"] = f"127.0.0.1:{self.port}"
        if self.workers is not None:
            values["workers"] = self.workers
        if self.graceful_timeout is not None:
            values["graceful_timeout"] = self.graceful_timeout
        return values

    def start(self, timeout: float = 60.0, settle: float = 0.0) -> GunicornServer:
        """Start and wait until it answers and every worker exists; ``settle`` waits longer
        (benchmarks let every worker finish its start-up before measuring)."""
        expected = self.workers if self.workers is not None else self.settings()["workers"]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so no worker can outlive the test
            )
        deadline = time.monotonic() + timeout
        try:
            wait_until(self._answers, timeout, 0.1, lambda: f"gunicorn serving {self.health_path}:\n{self.log()}")
            wait_until(lambda: len(self.worker_pids()) >= expected, max(0.0, deadline - time.monotonic()), 0.1,
                       lambda: f"{expected} gunicorn workers:\n{self.log()}")
        except BaseException:
            self.kill_all()  # never leave a half-started server behind
            raise
        time.sleep(settle)
        return self

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited early:\n{self.log()}")
        try:
            with urlopen(f"{self.url}{self.health_path}", timeout=5) as reply:
                return reply.status == 200
        except OSError:
            return False  # workers still booting: the master accepts before they answer

    def worker_pids(self) -> list[int]:
        return child_pids(self.process.pid) if self.process else []

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig=signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Stop the master with ``sig`` (SIGKILL after ``timeout``); its exit status."""
        if self.process is None:
            return None
        try:
            if self.process.poll() is None:
                self.process.send_signal(sig)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass  # killed below
        finally:
            self._kill_stragglers()
        return self.process.wait(5)

    def kill_all(self) -> int | None:
        """SIGKILL the master and every worker."""
        self._kill_stragglers()
        return self.process.wait(5)

    def _kill_stragglers(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def __enter__(self) -> GunicornServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def flask(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``flask --app wsgi ARGS`` against this server's configuration."""
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, check=check, timeout=120,
        )

    def cli_token(self, *scopes: str, name: str = "test") -> str:
        """A new token made by ``flask auth token``, as an operator makes one (the last line it prints)."""
        args = ["auth", "token", "--name", name]
        for scope in scopes:
            args += ["--scope", scope]
        return self.flask(*args).stdout.strip().splitlines()[-1]

    def token(self, *scopes: str, name: str = "test") -> str:
        """A token with the given scopes, created once per server and scope set."""
        key = tuple(sorted(scopes))
        if key not in self._tokens:
            self._tokens[key] = make_token(self.database_url, list(scopes), name)
        return self._tokens[key]

    def headers(self, *scopes: str) -> dict:
        return {"Authorization": f"Bearer {self.token(*(scopes or ('admin',)))}"}


@contextmanager
def serve(tmp_dir: Path, backend: str, config: dict | None = None, workers: int = 2):
    """A started server on a fresh database of ``backend``: stopped, and its database dropped, after."""
    with fresh_database_url(backend, tmp_dir) as url, GunicornServer(tmp_dir, url, config, workers) as server:
        yield server


def make_token(database_url: str, scopes: list[str], name: str = "test") -> str:
    """Create a token straight in the server's database, as ``flask auth token`` would."""
    from app.core.auth import create_token
    from app.core.db import connection, init_database

    init_database(database_url)
    with connection():
        _row, token = create_token(name, scopes)
    return token


def insert_log(database_url: str, message: str, module: str = "test::outside", level: int = 20) -> int:
    """Append a log record from outside the server, as a third process would."""
    from app.core.db import advisory_lock, connection, init_database, transaction, utcnow
    from app.core.logging import LOGS_LOCK_KEY
    from app.core.models import LogEntry

    init_database(database_url)
    with connection(), transaction():
        advisory_lock(LOGS_LOCK_KEY)
        return LogEntry.create(timestamp=utcnow(), level=level, module=module, message=message).id


def insert_logs(database_url: str, messages: list[str], module: str = "test::outside") -> None:
    """Append many log records from outside the server, in order, 1,000 to a transaction."""
    from app.core.db import advisory_lock, connection, init_database, transaction, utcnow
    from app.core.logging import LOGS_LOCK_KEY
    from app.core.models import LogEntry

    init_database(database_url)
    for start in range(0, len(messages), 1000):
        with connection(), transaction():
            advisory_lock(LOGS_LOCK_KEY)
            LogEntry.insert_many([{"timestamp": utcnow(), "level": 20, "module": module, "message": message}
                                  for message in messages[start:start + 1000]]).execute()
