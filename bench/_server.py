"""Shared by the benchmarks: gunicorn processes started the way the e2e tests start them.

A temporary TOML config named by ``LOCKGATE_CONFIG`` and a temporary data
directory named by ``LOCKGATE_DATA_DIR``; tokens come from
``flask --app wsgi auth token`` (the token is the last line of stdout).
Everything listens on 127.0.0.1 only.

Not a benchmark itself (no ``bench_`` prefix); pytest never collects bench/.
"""

from __future__ import annotations

import os
import platform
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.request import urlopen

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def discard(work: Path, keep: bool) -> None:
    """Remove a benchmark's temp directory, or say where it is when asked to keep it."""
    if keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def write_config(path: Path, tables: dict) -> Path:
    lines = ["# written by a Lockgate benchmark"]
    for section, values in tables.items():
        lines.append(f"\n[{section}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def children(pid: int) -> list[int]:
    """Direct children of a process (the gunicorn workers of a master)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces: fields after the closing parenthesis.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(entry.name))
    return sorted(found)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def project_gunicorn_settings(env: dict) -> dict:
    """The settings gunicorn.conf.py computes under ``env`` (what a plain start would use)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        namespace = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    keys = ("bind", "worker_class", "workers", "worker_connections", "timeout", "graceful_timeout", "keepalive")
    return {key: namespace[key] for key in keys}


def cpu_seconds(pids) -> float:
    """User + system CPU time of the processes (0 for any that has gone)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


class MachineLoad:
    """Share of the machine's CPUs used by everything, and by the given processes, over a window.

    The benchmarks share the machine with whatever else runs there; figures
    taken while other processes were busy are not comparable, so every
    measurement says how busy the rest of the machine was.
    """

    def __init__(self, pids_fn):
        self.pids_fn = pids_fn
        self.start()

    @staticmethod
    def _totals():
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields[:8]) - idle, sum(fields[:8])

    def start(self):
        self._busy, self._total = self._totals()
        self._ours = cpu_seconds(self.pids_fn())
        self._t = time.monotonic()

    def stop(self) -> dict:
        busy, total = self._totals()
        ours = cpu_seconds(self.pids_fn()) - self._ours
        elapsed = time.monotonic() - self._t
        cpus = os.cpu_count() or 1
        busy_cores = (busy - self._busy) / max(1, total - self._total) * cpus
        return {"busy_cores": busy_cores, "ours_cores": ours / elapsed,
                "other_cores": max(0.0, busy_cores - ours / elapsed), "cpus": cpus}

    @staticmethod
    def describe(load: dict) -> str:
        return (f"machine busy {load['busy_cores']:.2f} of {load['cpus']} cores: benchmark processes "
                f"{load['ours_cores']:.2f}, other processes {load['other_cores']:.2f}")


def machine() -> str:
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    cpu = "unknown cpu"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    load = Path("/proc/loadavg").read_text().split()[:3]
    return (f"nproc={os.cpu_count()} mem={mem_kib / 1048576:.1f} GiB cpu={cpu!r} "
            f"python={platform.python_version()} loadavg(before)={' '.join(load)}")


class Gunicorn:
    """One gunicorn master serving ``app_spec`` with a temp config and data dir."""

    def __init__(self, work_dir: Path, name: str, config: dict | None = None, app_spec: str = "wsgi:app",
                 conf_file: str = "gunicorn.conf.py", workers: int | None = None, extra_args=(),
                 port: int | None = None):
        self.dir = Path(work_dir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        tables = {"gateway": {"host": "127.0.0.1", "port": self.port}}
        for section, values in (config or {}).items():
            tables.setdefault(section, {}).update(values)
        self.config = tables
        self.config_path = write_config(self.dir / "lockgate.toml", tables)
        self.app_spec = app_spec
        self.conf_file = conf_file
        self.workers = workers
        self.extra_args = list(extra_args)
        self.log_path = self.dir / "gunicorn.log"
        self.process: subprocess.Popen | None = None

    @property
    def env(self) -> dict:
        env = dict(os.environ)
        env.update(LOCKGATE_CONFIG=str(self.config_path), LOCKGATE_DATA_DIR=str(self.dir / "data"))
        env.pop("LOCKGATE_STARTED_AT", None)
        return env

    @property
    def command(self) -> list[str]:
        cmd = [PYTHON, "-m", "gunicorn", "-c", self.conf_file, self.app_spec, "--bind", f"127.0.0.1:{self.port}"]
        if self.workers is not None:
            cmd += ["--workers", str(self.workers)]
        return cmd + self.extra_args

    def settings(self) -> dict:
        """gunicorn settings this server runs with (config file, then command-line overrides)."""
        values = project_gunicorn_settings(self.env)
        values["bind"] = f"127.0.0.1:{self.port}"
        if self.workers is not None:
            values["workers"] = self.workers
        return values

    def flask(self, *args: str) -> str:
        out = subprocess.run([PYTHON, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, env=self.env,
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"flask {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def token(self, name: str = "bench", scope: str = "read") -> str:
        return self.flask("auth", "token", "--name", name, "--scope", scope).strip().splitlines()[-1]

    def start(self, health_path: str = "/api/v1/status/health", timeout: float = 60.0) -> Gunicorn:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.log()}")
            try:
                with urlopen(self.url + health_path, timeout=1) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"gunicorn did not become healthy:\n{self.log()}")
        expected = self.workers or self.settings()["workers"]
        while time.monotonic() < deadline and len(self.worker_pids()) < expected:
            time.sleep(0.1)
        time.sleep(1.0)  # every worker past post_worker_init
        return self

    def worker_pids(self) -> list[int]:
        return children(self.process.pid) if self.process else []

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
