"""Publishing events from many transactions at once on PostgreSQL: where the append lock is taken.

The event table is read as "id > last seen", so appends take an advisory lock
held until commit (ids then commit in order). This measures busy publishers,
each running transactions that publish one event and then do more work (a few
statements and a short pause, as a service does), two ways in one run:

- ``early``: the lock taken when the event is published (how publishing worked before);
- ``at commit``: the event row written by ``db.before_commit``, as ``events.publish`` does now.

It prints transactions per second of each and their ratio (at commit / early).

    LOCKGATE_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/bench_events.py [--threads 8] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core import events, migrate  # noqa: E402
from app.core.db import advisory_lock, connection, database, init_database, transaction, utcnow  # noqa: E402
from app.core.models import Event  # noqa: E402
from tests.support.databases import POSTGRES_URL, database_url  # noqa: E402

WORK_PAUSE_SECS = 0.003  # what the rest of a transaction spends between its statements


def publish_early(topic: str, payload: dict) -> None:
    advisory_lock(events.EVENTS_LOCK_KEY)
    Event.insert(topic=topic, payload=json.dumps(payload), created_at=utcnow()).execute()


def one_transaction(publish, n: int) -> None:
    with transaction():
        publish("bench.event", {"n": n})
        for _ in range(3):
            database.execute_sql("SELECT 1")
            time.sleep(WORK_PAUSE_SECS)


def measure(publish, threads: int, seconds: float) -> float:
    done = [0] * threads
    deadline = time.monotonic() + seconds

    def run(index: int) -> None:
        with connection():
            while time.monotonic() < deadline:
                one_transaction(publish, done[index])
                done[index] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(done) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if not POSTGRES_URL:
        sys.exit("set LOCKGATE_TEST_DATABASE_URL to a PostgreSQL database")
    with tempfile.TemporaryDirectory() as tmp, database_url("postgresql", tmp) as url:
        init_database(url)
        with connection():
            migrate.upgrade()
        early = measure(publish_early, args.threads, args.seconds)
        at_commit = measure(events.publish, args.threads, args.seconds)
        database.close_all()
    print(f"publishers: {args.threads} threads, {args.seconds:g}s each way")
    print(f"lock taken early:     {early:8.1f} transactions/s")
    print(f"lock taken at commit: {at_commit:8.1f} transactions/s")
    print(f"ratio (at commit / early): {at_commit / early:.2f}")


if __name__ == "__main__":
    main()
