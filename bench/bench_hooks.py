"""Webhook delivery throughput and latency through a real gunicorn (two gevent workers).

    .venv/bin/python bench/bench_hooks.py [--events 1000] [--backend sqlite|postgresql]

Events are published on the bus from this process, as another area of the
service would (each one commits its delivery job); the server's workers claim
and deliver them to a local receiver. Printed: deliveries per second and the
delay from each event's commit to its arrival at the receiver (p50, p99).

The baseline, measured in the same run, is the receiver itself: the same
number of POSTs sent straight to it by a thread pool of the same width as a
worker's delivery slots. The ratio says how much of the receiver's capacity
the outbox path achieves. Nothing here asserts timings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.databases import database_url  # noqa: E402
from tests.support.server import GunicornServer  # noqa: E402

PUBLISHERS = 4
BASELINE_WIDTH = 32  # the default [hooks] max_concurrency: one worker's delivery slots


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # bursts of connections must queue, not be refused


class Receiver:
    """Records when each event (by its ``seq``) arrived; answers 204 at once."""

    def __init__(self):
        self.arrivals: dict[int, float] = {}
        self.count = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.expected = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.time()
                seq = json.loads(body)["data"].get("seq", -1)
                with receiver.lock:
                    receiver.count += 1
                    receiver.arrivals.setdefault(seq, now)
                    if len(receiver.arrivals) >= receiver.expected:
                        receiver.done.set()
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def reset(self, expected: int) -> None:
        with self.lock:
            self.arrivals, self.count, self.expected = {}, 0, expected
            self.done.clear()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def baseline(receiver: Receiver, events: int, width: int) -> float:
    """Deliveries per second when POSTing straight to the receiver."""
    receiver.reset(events)
    body = json.dumps({"type": "bench", "data": {"seq": 0}})

    def send(seq: int):
        payload = body.replace('"seq": 0', f'"seq": {seq}')
        requests.post(receiver.url + "/baseline", data=payload, headers={"Connection": "close"}, timeout=10)

    started = time.monotonic()
    with ThreadPoolExecutor(width) as pool:
        list(pool.map(send, range(events)))
    return events / (time.monotonic() - started)


def publish_events(server_db_url: str, events: int) -> dict[int, float]:
    """Publish ``events`` config.updated events from PUBLISHERS threads; seq -> commit time."""
    import app.hooks.outbox  # noqa: F401  (registers the outbox listener in this process)
    from app.core import events as bus
    from app.core.db import connection, init_database

    init_database(server_db_url)
    committed: dict[int, float] = {}
    lock = threading.Lock()

    def publisher(offset: int):
        for seq in range(offset, events, PUBLISHERS):
            with connection():
                bus.publish("config.updated", {"updated": ["bench"], "reload_required": False, "seq": seq})
            with lock:
                committed[seq] = time.time()

    threads = [threading.Thread(target=publisher, args=(n,)) for n in range(PUBLISHERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return committed


def run(events: int, backend: str) -> None:
    receiver = Receiver()
    config = {"hooks": {"allow_private_targets": True}, "rate_limits": {"enabled": False},
              "logs": {"level": "info"}}
    with tempfile.TemporaryDirectory(prefix="bench-hooks-") as tmp, database_url(backend, Path(tmp)) as url:
        server = GunicornServer(Path(tmp), url, config).start()
        try:
            reference = baseline(receiver, events, BASELINE_WIDTH)

            hook = requests.post(f"{server.url}/api/v1/hooks", json={"url": receiver.url + "/hook",
                                                                     "events": ["config.updated"]},
                                 headers=server.headers("write"), timeout=10)
            hook.raise_for_status()
            receiver.reset(events)
            started = time.time()
            committed = publish_events(server.database_url, events)
            published = time.time()
            if not receiver.done.wait(timeout=300):
                print(f"only {len(receiver.arrivals)} of {events} events arrived", file=sys.stderr)
            finished = max(receiver.arrivals.values())
        finally:
            server.stop()

    delays = [receiver.arrivals[seq] - committed[seq] for seq in committed if seq in receiver.arrivals]
    rate = len(receiver.arrivals) / (finished - started)
    print(f"backend: {backend}, 2 gunicorn workers, default [hooks] settings")
    print(f"events published:          {events} in {published - started:.2f}s "
          f"({events / (published - started):.0f}/s from {PUBLISHERS} publisher threads)")
    print(f"delivered (distinct):      {len(receiver.arrivals)} (requests received: {receiver.count})")
    print(f"deliveries per second:     {rate:.0f}")
    print(f"delay event -> receiver:   p50 {statistics.median(delays) * 1000:.0f} ms, "
          f"p99 {percentile(delays, 0.99) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms")
    print(f"baseline (direct POSTs, {BASELINE_WIDTH} threads): {reference:.0f}/s; "
          f"outbox path / baseline = {rate / reference:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite",
                        help="postgresql uses LOCKGATE_TEST_DATABASE_URL with a fresh schema")
    args = parser.parse_args()
    run(args.events, args.backend)


if __name__ == "__main__":
    main()
