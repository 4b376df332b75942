"""Tool reviews end to end through a real gunicorn: submitted, analysed in a subprocess, auto-approved, signed.

    .venv/bin/python bench/bench_review.py [--reviews 60] [--workers 2] [--backend sqlite|postgresql] [--keep]

A pool of clients submits small clean Python tools (``POST /api/v1/tool-review/sessions``);
each becomes an analysis job (a fresh interpreter with limits), then a signing job. Printed:
submissions per minute end to end (first request to last ``signed``), and per minute for
the request path alone, the baseline measured in the same run on the same server (the
ratio says what analysing and signing cost beyond accepting the submission). Nothing
here asserts timings.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._server import discard  # noqa: E402
from tests.review.support import RELAXED, submission  # noqa: E402
from tests.support.databases import database_url  # noqa: E402
from tests.support.server import GunicornServer  # noqa: E402

CLIENTS = 8
BASE = "/api/v1/tool-review"


def submit_all(server: GunicornServer, count: int, prefix: str) -> tuple[float, list[str]]:
    headers = server.headers("write")

    def one(n: int) -> str:
        answer = requests.post(f"{server.url}{BASE}/sessions", json=submission(name=f"{prefix}-{n}"),
                               headers=headers, timeout=60)
        answer.raise_for_status()
        return answer.json()["review_id"]

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as clients:
        ids = list(clients.map(one, range(count)))
    return time.perf_counter() - started, ids


def signed_count(server: GunicornServer) -> int:
    answer = requests.get(f"{server.url}{BASE}/sessions?status=signed&limit=1", headers=server.headers("read"),
                          timeout=30)
    return answer.json()["pagination"]["total"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reviews", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-review-"))
    config = {**RELAXED, "review": {**RELAXED["review"], "max_concurrency": 4}}
    try:
        with database_url(args.backend, work) as url, GunicornServer(work, url, config, args.workers) as server:
            server.flask("signing", "init")
            started = time.perf_counter()
            request_secs, _ids = submit_all(server, args.reviews, "tool")
            while signed_count(server) < args.reviews:
                if time.perf_counter() - started > 600:
                    raise SystemExit("reviews did not all get signed within 10 minutes")
                time.sleep(0.2)
            end_to_end = time.perf_counter() - started
    finally:
        discard(work, args.keep)
    per_minute = 60 * args.reviews / end_to_end
    accepted = 60 * args.reviews / request_secs
    print(f"{args.reviews} reviews, {args.workers} workers, {args.backend}")
    print(f"end to end (submitted -> analysed -> signed): {per_minute:8.0f} reviews/min ({end_to_end:.1f} s)")
    print(f"baseline, request path alone:               {accepted:8.0f} submissions/min ({request_secs:.1f} s)")
    print(f"ratio end to end / request path:            {per_minute / accepted:8.3f}")


if __name__ == "__main__":
    main()
