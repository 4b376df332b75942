"""Runtime executions through a real gunicorn with the offline ``echo`` provider, with 1 and with 4 workers.

    .venv/bin/python bench/bench_runtime.py [--executions 400] [--agents 8] [--backend sqlite|postgresql]

Executions are asked for over HTTP (``POST /api/v1/agents/{id}/execute``,
spread over several agents) by a pool of clients; each is a durable job that
a worker claims and runs through the agent runner. Printed per worker count:
executions per second from the first request to the last completion, and the
delay from each ``execute`` (the row's creation) to its ``running`` state
(the worker's start), p50 and p99, read from the database: under that load
(a backlog forms when requests come faster than runs end), and idle (one
execution at a time, each waited for: the claiming delay alone).

The baseline, measured in the same run on the same server, is the same
number of echo turns sent to sessions (``POST /api/v1/sessions/{id}/messages``
answers with the turn done) by the same pool of clients: the ratio says what
queueing a run as a durable job costs against running it in the request.
Nothing here asserts timings.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._server import discard  # noqa: E402
from tests.support.databases import database_url  # noqa: E402
from tests.support.server import GunicornServer  # noqa: E402

CLIENTS = 16
IDLE_EXECUTIONS = 50
LIMITS = {"rate_limits": {name: "100000/s" for name in (
    "default", "sessions_read", "sessions_write", "runtime_read", "runtime_write", "runtime_run")}}
AGENT = """agent bench_{n} {{
    capabilities = ["current_time"]
    with timeout = 30.seconds {{ }}
}}"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def delays(database: str) -> tuple[list[float], int]:
    """Seconds from creation to start of every execution that started, and how many completed."""
    from app.core.db import connection, init_database
    from app.runtime.models import COMPLETED, RuntimeExecution

    init_database(database)
    with connection():
        rows = list(RuntimeExecution.select(RuntimeExecution.created_at, RuntimeExecution.started_at,
                                            RuntimeExecution.status))
    waited = [(row.started_at - row.created_at).total_seconds() for row in rows if row.started_at]
    return waited, sum(1 for row in rows if row.status == COMPLETED)


def completed(database: str) -> int:
    from app.core.db import connection, init_database
    from app.runtime.models import COMPLETED, RuntimeExecution

    init_database(database)
    with connection():
        return RuntimeExecution.select().where(RuntimeExecution.status == COMPLETED).count()


def run_executions(server: GunicornServer, executions: int, agents: int) -> tuple[float, list[float]]:
    headers = server.headers("write")
    ids = []
    for n in range(agents):
        response = requests.post(f"{server.url}/api/v1/agents", json={"name": f"bench_{n}", "dsl": AGENT.format(n=n)},
                                 headers=headers, timeout=30)
        response.raise_for_status()
        ids.append(response.json()["id"])

    def execute(k: int) -> None:
        with requests.Session() as session:
            session.post(f"{server.url}/api/v1/agents/{ids[k % agents]}/execute", json={"input": f"run {k}"},
                         headers=headers, timeout=60).raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(execute, range(executions)))
    while completed(server.database_url) < executions:
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    waited, _ = delays(server.database_url)
    return executions / elapsed, waited


def run_idle(server: GunicornServer, count: int) -> list[float]:
    """Execute→running of executions asked for one at a time, each waited for."""
    headers = server.headers("write")
    response = requests.post(f"{server.url}/api/v1/agents", json={"name": "idle", "dsl": AGENT.format(n="idle")},
                             headers=headers, timeout=30)
    agent_id = response.json()["id"]
    before = completed(server.database_url)
    for k in range(count):
        requests.post(f"{server.url}/api/v1/agents/{agent_id}/execute", json={"input": f"idle {k}"},
                      headers=headers, timeout=30).raise_for_status()
        while completed(server.database_url) < before + k + 1:
            time.sleep(0.005)
    from app.core.db import connection, init_database
    from app.runtime.models import RuntimeExecution

    init_database(server.database_url)
    with connection():
        rows = RuntimeExecution.select().where(RuntimeExecution.agent_id == agent_id)
        return [(row.started_at - row.created_at).total_seconds() for row in rows]


def run_turns(server: GunicornServer, turns: int) -> float:
    headers = server.headers("write")
    sessions = [requests.post(f"{server.url}/api/v1/sessions", json={}, headers=headers, timeout=30).json()["id"]
                for _ in range(CLIENTS)]

    def client(n: int) -> None:
        with requests.Session() as session:
            for k in range(n, turns, CLIENTS):
                session.post(f"{server.url}/api/v1/sessions/{sessions[n]}/messages", json={"content": f"turn {k}"},
                             headers=headers, timeout=60).raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))
    return turns / (time.perf_counter() - started)


def measure(workers: int, executions: int, agents: int, backend: str, keep: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    config = {**LIMITS, "runtime": {"max_in_flight_per_agent": 8}, "logs": {"level": "warn"}}
    try:
        with database_url(backend, work) as url:
            server = GunicornServer(work, url, config, workers, log_level=None).start(settle=2.0)
            try:
                turns_per_sec = run_turns(server, executions)
                per_sec, waited = run_executions(server, executions, agents)
                idle = run_idle(server, IDLE_EXECUTIONS)
            finally:
                server.stop()
    finally:
        discard(work, keep)
    print(f"| {workers} | {per_sec:,.0f} | {turns_per_sec:,.0f} | {per_sec / turns_per_sec:.2f} | "
          f"{statistics.median(waited) * 1000:.0f} ms | {percentile(waited, 0.99) * 1000:.0f} ms | "
          f"{statistics.median(idle) * 1000:.0f} ms | {percentile(idle, 0.99) * 1000:.0f} ms |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executions", type=int, default=400)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = parser.parse_args()
    print(f"{args.executions} executions over {args.agents} agents, {CLIENTS} clients, echo provider, "
          f"{args.backend}; baseline: as many session turns by the same clients")
    print("| workers | executions/s | session turns/s (baseline) | ratio | execute→running p50 (load) | p99 (load) "
          "| p50 (idle) | p99 (idle) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for workers in (1, 4):
        measure(workers, args.executions, args.agents, args.backend, args.keep)


if __name__ == "__main__":
    main()
