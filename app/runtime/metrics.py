"""Health and metrics of the runtime API, every figure measured: the host with psutil, the rest in the database.

CPU use is the host's over the time since this worker's previous sample
(psutil keeps the previous reading), so it never blocks; the first sample of
a worker measures over a short cooperative pause instead.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil

from app.agent.memory import open_memory
from app.core.areas import areas
from app.core.db import database, iso, utcnow
from app.core.redaction import MARKER
from app.runtime import service

FIRST_SAMPLE_SECS = 0.1
MIN_SAMPLE_SECS = 0.1  # closer samples repeat the last figure: a shorter window says little

_cpu_lock = threading.Lock()
_cpu_sample: tuple[float, float] | None = None  # (monotonic time, percent)


def uptime(state) -> int:
    return int(time.time() - state.started_at)


def health(state) -> tuple[dict, int]:
    """``healthy`` with uptime and version when the database answers; 500 ``unhealthy`` otherwise."""
    timestamp = iso(utcnow())
    try:
        database.execute_sql("SELECT 1").fetchone()
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return {"status": "unhealthy", "error": f"Database connection failed: {reason}", "timestamp": timestamp}, 500
    return {"status": "healthy", "uptime_seconds": uptime(state), "timestamp": timestamp,
            "version": state.version}, 200


def cpu_percent() -> float:
    global _cpu_sample
    with _cpu_lock:
        now = time.monotonic()
        if _cpu_sample is None:
            psutil.cpu_percent(interval=None)
            time.sleep(FIRST_SAMPLE_SECS)  # cooperative in a served worker
        elif now - _cpu_sample[0] < MIN_SAMPLE_SECS:
            return _cpu_sample[1]
        _cpu_sample = (time.monotonic(), float(psutil.cpu_percent(interval=None)))
        return _cpu_sample[1]


def secrets_count(settings) -> int:
    """Secret values in the configuration: each value the redaction of ``GET /api/v1/config`` hides."""
    return _masked(settings.data, settings.redacted())


def _masked(value, shown) -> int:
    if isinstance(value, dict) and isinstance(shown, dict):
        return sum(_masked(item, shown.get(key)) for key, item in value.items())
    if isinstance(value, (list, tuple)) and isinstance(shown, (list, tuple)):
        return sum(_masked(item, other) for item, other in zip(value, shown, strict=False))
    return int(isinstance(shown, str) and MARKER in shown and shown != value)


def mcp_connections(settings) -> int:
    """Live MCP connections, from the MCP area's status contribution when that area exists."""
    for area in areas():
        if area.name == "mcp" and area.status is not None:
            return int(area.status(settings).get("mcp", {}).get("connections", 0))
    return 0


def _existing(path: Path) -> Path:
    """The data directory, or the nearest directory above it that exists (the same file system, usually)."""
    path = path.resolve()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def metrics(state) -> dict:
    settings = state.settings
    memory = psutil.virtual_memory()
    disk = psutil.disk_usage(str(_existing(settings.data_dir)))
    cpu = cpu_percent()
    total, active = service.agent_counts()
    seconds = uptime(state)
    return {
        "system": {"uptime_seconds": seconds, "memory_usage": f"{memory.percent:.1f}%", "cpu_usage": f"{cpu:.1f}%"},
        "agents": {"total": total, "active": active, "idle": total - active},
        "uptime_seconds": seconds,
        "memory_usage_bytes": int(memory.total - memory.available),
        "memory_usage_percent": float(memory.percent),
        "cpu_usage_percent": cpu,
        "disk_usage_bytes": int(disk.used),
        "disk_usage_percent": float(disk.percent),
        "active_agents": active,
        "total_agents": total,
        "secrets_count": secrets_count(settings),
        "mcp_connections": mcp_connections(settings),
        "vector_db_items": open_memory(settings.get("memory.backend")).count(),
    }
