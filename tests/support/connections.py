"""Which gunicorn workers hold which TCP connections, read from /proc.

A test that must act on the worker busy with a request (kill it mid-call) finds it here.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.server import GunicornServer


def _socket_inodes(port: int, side: str) -> set[str]:
    """Inodes of established TCP sockets whose local or remote port is ``port``."""
    column = 1 if side == "local" else 2
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[column].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _pids_holding(pids: list[int], inodes: set[str]) -> list[int]:
    holding = []
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except (FileNotFoundError, PermissionError):
            continue
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            holding.append(pid)
    return holding


def workers_calling(server: GunicornServer, port: int) -> list[int]:
    """Workers with an open connection to a server on ``port`` (the fake LLM)."""
    return _pids_holding(server.worker_pids(), _socket_inodes(port, "remote"))


def workers_serving(server: GunicornServer) -> list[int]:
    """Workers holding client connections right now."""
    return _pids_holding(server.worker_pids(), _socket_inodes(server.port, "local"))
