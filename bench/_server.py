"""Shared by the benchmarks: measuring the gunicorn processes and the machine they share.

The servers themselves are started as the end-to-end tests start them
(tests/support/server.py: a temporary TOML config named by ``LOCKGATE_CONFIG``,
a temporary data directory, 127.0.0.1 only, its own process group).

Not a benchmark itself (no ``bench_`` prefix); pytest never collects bench/. The
benchmarks put the repository root on ``sys.path`` before importing it.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from pathlib import Path

from tests.support.server import GunicornServer


def discard(work: Path, keep: bool) -> None:
    """Remove a benchmark's temp directory, or say where it is when asked to keep it."""
    if keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def deployment(work_dir: Path, config: dict | None = None, workers: int | None = None, **options) -> GunicornServer:
    """A server as a plain deployment runs one: the shipped database, log level, worker count and stop timeout."""
    return GunicornServer(work_dir, None, config, workers, log_level=None, graceful_timeout=None, **options)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


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
