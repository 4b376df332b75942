"""A real gunicorn process serving Lockgate, for end-to-end tests over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.config import merge, write_config

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GunicornServer:
    def __init__(self, tmp_dir: Path, database_url: str, config: dict | None = None, workers: int = 2):
        self.dir = Path(tmp_dir)
        self.port = free_port()
        self.database_url = database_url
        self.workers = workers
        self.config = merge(
            {
                "gateway": {"host": "127.0.0.1", "port": self.port},
                "database": {"url": database_url},
                "logs": {"level": "debug"},
            },
            config,
        )
        self.config_path = write_config(self.dir / "lockgate.toml", self.config)
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path = self.dir / "gunicorn.log"
        self._tokens: dict[tuple, str] = {}

    @property
    def env(self) -> dict:
        env = dict(os.environ)
        env.update(LOCKGATE_CONFIG=str(self.config_path), LOCKGATE_DATA_DIR=str(self.dir / "data"))
        env.pop("LOCKGATE_STARTED_AT", None)
        return env

    def start(self, timeout: float = 60.0) -> GunicornServer:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app",
             "--workers", str(self.workers), "--graceful-timeout", "10"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so no worker can outlive the test
        )
        try:
            self._wait_until_healthy(timeout)
        except BaseException:
            self.kill_all()  # never leave a half-started server behind
            raise
        return self

    def _wait_until_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/api/v1/status/health", timeout=5).status_code == 200:
                    self._wait_for_workers(deadline)
                    return
            except requests.RequestException:
                pass  # workers still booting: the master accepts before they answer
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not become healthy:\n{self.log()}")

    def _wait_for_workers(self, deadline: float) -> None:
        """Every worker answers (distinct pids seen) before a test starts counting."""
        while time.monotonic() < deadline and len(self.worker_pids()) < self.workers:
            time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig=signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill_all()
        finally:
            self._kill_stragglers()

    def kill_all(self) -> int | None:
        """SIGKILL the master and every worker."""
        self._kill_stragglers()
        return self.process.wait(5)

    def _kill_stragglers(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def flask(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``flask --app wsgi ARGS`` against this server's configuration."""
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", *args],
            cwd=ROOT, env=self.env, capture_output=True, text=True, check=check, timeout=60,
        )

    def token(self, *scopes: str, name: str = "test") -> str:
        """A token with the given scopes, created once per server and scope set."""
        key = tuple(sorted(scopes))
        if key not in self._tokens:
            self._tokens[key] = make_token(self.database_url, list(scopes), name)
        return self._tokens[key]

    def headers(self, *scopes: str) -> dict:
        return {"Authorization": f"Bearer {self.token(*(scopes or ('admin',)))}"}


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
