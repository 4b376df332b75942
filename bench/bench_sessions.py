"""Session listing cost against table size, and message throughput.

Starts gunicorn (2 workers), then measures ``GET /api/v1/sessions?limit=50``
with 1,000 and with 100,000 active sessions in the table (rows written
directly, in bulk), prints requests per second of both and their ratio
(target: at least 0.8, i.e. the cost of a page does not grow with the table),
then messages per second through the ``echo`` provider.

Run by hand from the repository root:

    .venv/bin/python bench/bench_sessions.py
    LOCKGATE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/bench_sessions.py --backend postgresql
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.db import connection, init_database, transaction, utcnow  # noqa: E402
from app.sessions.models import AgentSession  # noqa: E402
from app.sessions.service import recount_tallies  # noqa: E402
from tests.support.databases import database_url  # noqa: E402
from tests.support.server import GunicornServer  # noqa: E402

CONFIG = {
    "rate_limits": {"enabled": False},
    # Debug would store an access-log row per request: that is not what is measured.
    "logs": {"level": "warn"},
    # The sessions must stay active while they are counted.
    "agent": {"idle_after_secs": 86_400, "session_timeout_secs": 7 * 86_400, "max_turns": 100_000},
}
INSERT_BATCH = 2_000


def add_sessions(count: int, start: datetime) -> None:
    """Write ``count`` active sessions straight into the table, then fix the tallies."""
    now = utcnow()
    for offset in range(0, count, INSERT_BATCH):
        rows = []
        for n in range(offset, min(offset + INSERT_BATCH, count)):
            created = start - timedelta(seconds=n)
            rows.append({
                "id": f"sess_{secrets.token_hex(12)}", "channel": "api", "user_id": f"user_{n % 5000}",
                "status": "active", "created_at": created, "last_activity": now, "turn_count": 0,
                "message_count": 0, "input_tokens": 0, "output_tokens": 0, "metadata": "{}",
            })
        with transaction():
            AgentSession.insert_many(rows).execute()
    recount_tallies()


def hammer(seconds: float, concurrency: int, request) -> list[float]:
    """Run ``request(http, thread index)`` from ``concurrency`` threads for ``seconds``; the latencies."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(index: int):
        http = requests.Session()
        mine = []
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                request(http, index)
            except Exception as exc:  # keep going; reported below
                failures.append(repr(exc))
                continue
            mine.append(time.perf_counter() - started)
        http.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return latencies


class Measurement:
    def __init__(self, label: str):
        self.label = label
        self.latencies: list[float] = []
        self.seconds = 0.0

    def add(self, latencies: list[float], seconds: float) -> None:
        self.latencies += latencies
        self.seconds += seconds

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def report(self) -> None:
        median = statistics.median(self.latencies) * 1000
        print(f"  {self.label:<46} {self.rate:8.1f} req/s   median {median:6.2f} ms   "
              f"({len(self.latencies)} requests)")


def list_page(server: GunicornServer, expected_total: int):
    url = f"{server.url}/api/v1/sessions?limit=50"
    headers = server.headers("read")

    def request(http, _index):
        response = http.get(url, headers=headers, timeout=30)
        body = response.json()
        if response.status_code != 200 or body["total"] != expected_total or len(body["sessions"]) != 50:
            raise RuntimeError(f"unexpected answer {response.status_code}: {json.dumps(body)[:200]}")

    return request


def compare_listing(small: GunicornServer, large: GunicornServer, rounds: int, seconds: float,
                    concurrency: int) -> None:
    """Alternate short runs against both servers (A B B A ...), so that load from
    anything else on the machine falls on both measurements alike."""
    measured = {
        "small": (Measurement("GET /sessions?limit=50, 1,000 sessions"), list_page(small, 1_000)),
        "large": (Measurement("GET /sessions?limit=50, 100,000 sessions"), list_page(large, 100_000)),
    }
    for _, request in measured.values():
        hammer(1.0, concurrency, request)  # warm-up: pools, caches
    for number in range(rounds):
        order = ("small", "large") if number % 2 == 0 else ("large", "small")
        for name in order:
            measurement, request = measured[name]
            began = time.monotonic()
            latencies = hammer(seconds / rounds, concurrency, request)
            measurement.add(latencies, time.monotonic() - began)
    for measurement, _ in measured.values():
        measurement.report()
    ratio = measured["large"][0].rate / measured["small"][0].rate
    print(f"  ratio 100,000 / 1,000: {ratio:.2f} (target >= 0.80)")


def measure_messages(server: GunicornServer, seconds: float, concurrency: int) -> None:
    headers = server.headers("write")
    sessions = []
    for _ in range(concurrency):
        response = requests.post(f"{server.url}/api/v1/sessions", json={"user_id": "bench"}, headers=headers,
                                 timeout=30)
        sessions.append(response.json()["id"])

    def request(http, index):
        url = f"{server.url}/api/v1/sessions/{sessions[index]}/messages"
        response = http.post(url, json={"content": "benchmark message about throughput"}, headers=headers,
                             timeout=60)
        if response.status_code != 200:
            raise RuntimeError(f"unexpected answer {response.status_code}: {response.text[:200]}")

    measurement = Measurement(f"POST messages (echo), {concurrency} sessions at once")
    began = time.monotonic()
    measurement.add(hammer(seconds, concurrency, request), time.monotonic() - began)
    measurement.report()


def start_server(tmp: Path, url: str, workers: int, sessions: int) -> GunicornServer:
    tmp.mkdir()
    init_database(url)
    server = GunicornServer(tmp, url, CONFIG, workers=workers).start()
    with connection():
        add_sessions(sessions, utcnow() - timedelta(days=1))
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per figure")
    parser.add_argument("--rounds", type=int, default=10, help="alternations between the two tables")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    print(f"backend {args.backend}, {args.workers} gunicorn workers per server, "
          f"{args.concurrency} client threads, {args.seconds:g} s per figure")
    with (tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp,
          database_url(args.backend, Path(tmp)) as small_url,
          database_url(args.backend, Path(tmp) / "large") as large_url):
        servers = []
        try:
            servers.append(start_server(Path(tmp) / "small", small_url, args.workers, 1_000))
            servers.append(start_server(Path(tmp) / "large-server", large_url, args.workers, 100_000))
            compare_listing(*servers, args.rounds, args.seconds, args.concurrency)
            measure_messages(servers[0], args.seconds, args.concurrency)
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    main()
