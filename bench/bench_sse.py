"""SSE fan-out: N concurrent /api/v1/logs/stream clients, delay from a log record's insert to every client.

    .venv/bin/python bench/bench_sse.py [--streams 2000] [--rate 5] [--duration 30] [--client-procs 1]

What it does, all on 127.0.0.1:

1. Starts Lockgate under gunicorn on the default deployment: gunicorn.conf.py
   as shipped (gevent workers, its worker count and worker_connections), a
   config file with nothing but ``[gateway] host/port`` (default database:
   SQLite in a temp data dir; default rate limits).
2. Creates read tokens: one with ``flask --app wsgi auth token`` and, since
   the default limit of the ``default`` group is 30 requests/s per token,
   enough further tokens (made in-process with ``app.core.auth.create_token``)
   that opening the streams stays under 25 opens/s per token. 429s, if any,
   are retried after Retry-After and counted.
3. Measures the VmRSS of every worker (children of the gunicorn master) with
   no stream open, opens N streams from gevent client processes
   (``--client-procs``, raw sockets read by tests/support/sse.py), waits until
   every stream has its first bytes, measures VmRSS again: memory per stream is
   (RSS with N open - RSS with none) / N, summed over workers.
4. A producer in this process inserts one log record every 1/rate seconds
   straight into the server's database (as a third process would: the
   record's commit time is the start of its delay), module ``bench::sse``;
   clients subscribe with ``module=bench`` and note the arrival time of each
   ``id:``. Delay = arrival - commit (CLOCK_MONOTONIC is system-wide).
5. Sends SIGTERM to the gunicorn master with every stream open and reports
   how long the graceful stop took and how many streams ended with the
   terminating chunk.

It raises this process's RLIMIT_NOFILE soft limit (inherited by gunicorn and
the clients) to what N streams need, within the hard limit, and says so.
Nothing asserts: it prints figures. The target is 10,000 streams, every one
opened, with p99 delay under 1 s.
"""

from __future__ import annotations

import argparse
import array
import json
import math
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._server import MachineLoad, cpu_seconds, deployment, discard, machine, rss_kib  # noqa: E402
from tests.support.server import GunicornServer  # noqa: E402
from tests.support.sse import SseStream  # noqa: E402

MODULE = "bench::sse"
OPENS_PER_TOKEN_PER_SEC = 25
STREAMS_PER_TOKEN = 80
TARGET_STREAMS = 10_000


# ---------------------------------------------------------------------------------------------
# client process (gevent): --client-mode
# ---------------------------------------------------------------------------------------------

def client_main(argv) -> int:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import gevent.event

    parser = argparse.ArgumentParser()
    parser.add_argument("--client-mode", action="store_true")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", required=True, help="file: one token a line")
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--open-rate", type=float, required=True, help="stream opens per second per token")
    parser.add_argument("--linger", type=float, default=0.0, help="stop by itself this long after ready")
    args = parser.parse_args(argv)

    tokens = Path(args.tokens).read_text().split()
    ids = array.array("q")
    times = array.array("d")
    stats = {"opened": 0, "failed": 0, "rejected_429": 0, "ended_clean": 0, "ended_abrupt": 0,
             "open_seconds": 0.0, "heartbeats": 0, "failures": {}}
    ready = gevent.event.Event()
    stop = gevent.event.Event()
    pending = [args.streams]
    streams: list[SseStream] = []

    def note_failure(reason: str) -> None:
        stats["failures"][reason] = stats["failures"].get(reason, 0) + 1

    def one_done():
        pending[0] -= 1
        if pending[0] == 0:
            ready.set()

    def open_stream(token):
        """An open stream (opens answered 429 are retried after Retry-After), or None when refused."""
        while True:
            stream = SseStream(f"http://127.0.0.1:{args.port}", "/api/v1/logs/stream",
                               {"Authorization": f"Bearer {token}"}, {"module": "bench"}, timeout=None)
            if stream.status != 429:
                break
            stats["rejected_429"] += 1
            stream.close()
            gevent.sleep(int(stream.headers.get("retry-after") or 1))
        if stream.status != 200:
            stats["failed"] += 1
            note_failure(f"HTTP {stream.status}")
            stream.close()
            one_done()
            return None
        return stream

    def run_stream(token, delay):
        gevent.sleep(delay)
        started = time.monotonic()
        try:
            stream = open_stream(token)
        except OSError as exc:
            stats["failed"] += 1
            note_failure(type(exc).__name__)
            one_done()
            return
        if stream is None:
            return
        streams.append(stream)
        counted = False
        try:
            # A stream's first bytes are its retry field.
            if stream.receive_until(lambda: stream.retry is not None):
                counted = True
                stats["opened"] += 1
                stats["open_seconds"] += time.monotonic() - started
                one_done()
            while (event := stream.next_event()) is not None:
                ids.append(int(event.id))
                times.append(time.monotonic())
        except OSError:
            pass
        stats["heartbeats"] += stream.comments.count("heartbeat")
        if stop.is_set():
            return
        if stream.ended:
            stats["ended_clean"] += 1
        else:
            stats["ended_abrupt"] += 1
        if not counted:
            stats["failed"] += 1
            note_failure("ended before its first bytes")
            one_done()

    greenlets = []
    for n in range(args.streams):
        token = tokens[n % len(tokens)]
        nth_of_token = n // len(tokens)
        greenlets.append(gevent.spawn(run_stream, token, nth_of_token / args.open_rate))

    gevent.signal_handler(signal.SIGUSR1, stop.set)
    ready.wait()
    print(json.dumps({"ready": True, **stats}), flush=True)
    if args.linger:
        gevent.spawn_later(args.linger, stop.set)
    # Run until told to stop (SIGUSR1) or every stream has ended.
    while not stop.is_set() and any(not g.dead for g in greenlets):
        stop.wait(0.2)
    stop.set()
    for stream in streams:
        stream.close()
    gevent.joinall(greenlets, timeout=5)
    with open(args.out, "wb") as out:
        header = json.dumps({**stats, "events": len(ids)}).encode()
        out.write(len(header).to_bytes(4, "little") + header)
        ids.tofile(out)
        times.tofile(out)
    return 0


def read_client_result(path: Path):
    with open(path, "rb") as f:
        size = int.from_bytes(f.read(4), "little")
        stats = json.loads(f.read(size))
        ids = array.array("q")
        ids.fromfile(f, stats["events"])
        times = array.array("d")
        times.fromfile(f, stats["events"])
    return stats, ids, times


# ---------------------------------------------------------------------------------------------
# orchestrator
# ---------------------------------------------------------------------------------------------

def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[index]


def raise_nofile(needed: int) -> str:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return f"RLIMIT_NOFILE soft {soft} (hard {hard}) already enough for {needed}"
    new_soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    note = "" if new_soft >= needed else f" -- below the {needed} needed: raise the hard limit"
    return f"RLIMIT_NOFILE soft raised {soft} -> {new_soft} (hard {hard}){note}"


def workers_rss(server: GunicornServer) -> dict[int, int]:
    return {pid: rss_kib(pid) for pid in server.worker_pids()}


def main() -> int:
    if "--client-mode" in sys.argv:
        return client_main(sys.argv[1:])

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=2000, help="concurrent SSE clients")
    parser.add_argument("--rate", type=float, default=5.0, help="log records inserted per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of producing")
    parser.add_argument("--client-procs", type=int, default=1, help="gevent client processes sharing the streams")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: gunicorn.conf.py's)")
    parser.add_argument("--idle-window", type=float, default=5.0, help="seconds to measure idle streams' CPU")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = parser.parse_args()

    nofile_note = raise_nofile(args.streams + 1024)
    work = Path(tempfile.mkdtemp(prefix="lockgate-bench-sse-"))
    server = deployment(work / "lockgate", None, args.workers)
    clients: list[subprocess.Popen] = []
    try:
        settings = server.settings()
        print("# bench_sse")
        print(f"machine: {machine()}")
        print(f"gunicorn: worker_class={settings['worker_class']} workers={settings['workers']} "
              f"worker_connections={settings['worker_connections']} graceful_timeout={settings['graceful_timeout']}")
        print(f"command: {' '.join(server.command)}")
        print(f"config ({server.config_path}): only [gateway] host/port; everything else default "
              "(SQLite in the data dir, logs.heartbeat_secs 15, rate_limits.default 30/s per token)")
        print(f"streams {args.streams} from {args.client_procs} gevent client process(es); producer {args.rate:g} "
              f"records/s for {args.duration:g} s; {nofile_note}")
        server.start(settle=1.0)

        # Enough tokens to open under the per-token rate limit, and each well under
        # [gateway] max_streams_per_token (100): the warm-up's streams hold slots a while.
        n_tokens = max(1, math.ceil(args.streams / OPENS_PER_TOKEN_PER_SEC / 4),
                       math.ceil(args.streams / STREAMS_PER_TOKEN))
        tokens = [server.cli_token("read", name="bench-sse")]
        from app.core.auth import create_token
        from app.core.db import advisory_lock, connection, init_database, transaction, utcnow
        from app.core.logging import LOGS_LOCK_KEY
        from app.core.models import LogEntry

        init_database(server.database_url)
        with connection():
            tokens += [create_token(f"bench-sse-{i}", ["read"])[1] for i in range(1, n_tokens)]
        token_file = work / "tokens.txt"
        token_file.write_text("\n".join(tokens) + "\n")
        print(f"tokens: {len(tokens)} (first from `flask --app wsgi auth token`), "
              f"opening at <= {OPENS_PER_TOKEN_PER_SEC}/s per token")

        def insert(seq: int) -> tuple[int, float]:
            with connection(), transaction():
                advisory_lock(LOGS_LOCK_KEY)
                row = LogEntry.create(timestamp=utcnow(), level=20, module=MODULE, message=f"bench record {seq}")
            return row.id, time.monotonic()

        # Warm every worker's code paths (a stream each, a record), then the baseline.
        warm = subprocess.Popen(
            [sys.executable, __file__, "--client-mode", "--port", str(server.port), "--tokens", str(token_file),
             "--streams", str(4 * len(server.worker_pids())), "--out", str(work / "warm.bin"),
             "--open-rate", "50", "--linger", "3"],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )
        warm.stdout.readline()
        insert(-100)
        warm.wait(60)
        time.sleep(2.0)
        rss_before = workers_rss(server)
        shown = ", ".join(f"{pid}: {kib / 1024:.1f} MiB" for pid, kib in rss_before.items())
        print(f"worker RSS with no stream: {shown}")

        # Open the streams.
        per_proc = [args.streams // args.client_procs + (1 if i < args.streams % args.client_procs else 0)
                    for i in range(args.client_procs)]
        opened_at = time.monotonic()
        for i, count in enumerate(per_proc):
            clients.append(subprocess.Popen(
                [sys.executable, __file__, "--client-mode", "--port", str(server.port), "--tokens", str(token_file),
                 "--streams", str(count), "--out", str(work / f"client-{i}.bin"),
                 "--open-rate", str(OPENS_PER_TOKEN_PER_SEC / args.client_procs)],
                cwd=ROOT, stdout=subprocess.PIPE, text=True,
            ))
        ready_stats = []
        for client in clients:
            line = client.stdout.readline()
            if not line:
                raise RuntimeError("a client process died before its streams were open")
            ready_stats.append(json.loads(line))
        open_secs = time.monotonic() - opened_at
        opened = sum(s["opened"] for s in ready_stats)
        failed = sum(s["failed"] for s in ready_stats)
        rejected = sum(s["rejected_429"] for s in ready_stats)
        print(f"opened {opened} streams in {open_secs:.1f} s ({failed} failed, {rejected} opens answered 429 and "
              f"retried); mean time to first bytes "
              f"{sum(s['open_seconds'] for s in ready_stats) / max(1, opened):.2f} s")
        reasons: dict[str, int] = {}
        for each in ready_stats:
            for reason, count in each["failures"].items():
                reasons[reason] = reasons.get(reason, 0) + count
        if reasons:
            shown = ", ".join(f"{reason} x{count}" for reason, count in sorted(reasons.items()))
            print(f"failed opens by reason: {shown}")

        # Deliver a few records so every stream's buffers exist, then measure memory.
        for seq in range(3):
            insert(-1 - seq)
            time.sleep(0.3)
        time.sleep(2.0)
        rss_open = workers_rss(server)
        delta_kib = sum(rss_open.get(pid, 0) - kib for pid, kib in rss_before.items())
        print(f"worker RSS with {opened} streams: "
              f"{', '.join(f'{pid}: {kib / 1024:.1f} MiB' for pid, kib in rss_open.items())}")
        per_stream = delta_kib / max(1, opened)
        print(f"memory per open stream: {per_stream:.1f} KiB ({delta_kib / 1024:.1f} MiB over {opened} streams)")

        # What the open streams cost with nothing to send.
        pids = server.worker_pids()
        client_pids = [client.pid for client in clients]
        idle_before = cpu_seconds(pids)
        time.sleep(args.idle_window)
        idle_cpu = cpu_seconds(pids) - idle_before
        print(f"worker CPU with {opened} idle streams: {100 * idle_cpu / args.idle_window:.1f}% of one core "
              f"(over {args.idle_window:g} s, no records)")

        # Produce at a fixed rate.
        commits: dict[int, float] = {}
        cpu_before = cpu_seconds(pids)
        client_cpu_before = cpu_seconds(client_pids)
        load = MachineLoad(lambda: pids + client_pids + [os.getpid()])
        interval = 1.0 / args.rate
        start = time.monotonic()
        seq = 0
        late = 0
        while True:
            due = start + seq * interval
            if due > start + args.duration:
                break
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                late += 1
            row_id, committed = insert(seq)
            commits[row_id] = committed
            seq += 1
        produce_secs = time.monotonic() - start
        time.sleep(3.0)  # last deliveries
        machine_load = load.stop()
        cpu_used = cpu_seconds(pids) - cpu_before
        client_cpu = cpu_seconds(client_pids) - client_cpu_before
        window = time.monotonic() - start

        # Graceful stop with every stream open.
        stop_started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(60)
            stop_secs = time.monotonic() - stop_started
        except subprocess.TimeoutExpired:
            stop_secs = float("nan")
        time.sleep(1.0)
        for client in clients:
            client.send_signal(signal.SIGUSR1)
        for client in clients:
            client.wait(60)

        delays = []
        last_arrival: dict[int, float] = {}
        per_record_count: dict[int, int] = {}
        stats_all = []
        for i in range(len(clients)):
            stats, ids, times = read_client_result(work / f"client-{i}.bin")
            stats_all.append(stats)
            for row_id, arrived in zip(ids, times, strict=True):
                committed = commits.get(row_id)
                if committed is None:
                    continue  # warm-up records
                delay = arrived - committed
                delays.append(delay)
                per_record_count[row_id] = per_record_count.get(row_id, 0) + 1
                if arrived > last_arrival.get(row_id, 0.0):
                    last_arrival[row_id] = arrived
        expected = len(commits) * opened
        complete = sum(1 for row_id in commits if per_record_count.get(row_id, 0) == opened)
        to_all = [last_arrival[r] - commits[r] for r in commits if r in last_arrival]

        print(f"\n## delivery ({len(commits)} records at {args.rate:g}/s over {produce_secs:.1f} s, "
              f"{late} inserts late; {opened} streams)")
        print(f"deliveries: {len(delays)} of {expected} expected ({100 * len(delays) / max(1, expected):.2f}%); "
              f"records that reached every stream: {complete} of {len(commits)}")
        print(f"delay insert -> client, every delivery: p50 {1000 * percentile(delays, 50):.0f} ms, "
              f"p99 {1000 * percentile(delays, 99):.0f} ms, max {1000 * max(delays, default=float('nan')):.0f} ms")
        print(f"delay insert -> last client, per record: p50 {1000 * percentile(to_all, 50):.0f} ms, "
              f"p99 {1000 * percentile(to_all, 99):.0f} ms")
        print(f"records/s delivered: {len(commits) / produce_secs:.2f} records/s to every stream = "
              f"{len(delays) / produce_secs:.0f} events/s in all")
        print(f"worker CPU while producing: {cpu_used:.1f} s over {window:.1f} s "
              f"({100 * cpu_used / window:.0f}% of one core, {1e6 * cpu_used / max(1, len(delays)):.0f} us per event)")
        busiest_client = client_cpu / window / len(clients)
        print(f"client CPU while producing: {100 * busiest_client:.0f}% of one core per client process"
              + ("  -- near saturation: the delays include client lag; use --client-procs or a lower --rate"
                 if busiest_client > 0.8 else ""))
        print(MachineLoad.describe(machine_load)
              + ("  -- the machine was not quiet: run again" if machine_load["other_cores"] > 0.1 else ""))
        ended_clean = sum(s["ended_clean"] for s in stats_all)
        ended_abrupt = sum(s["ended_abrupt"] for s in stats_all)
        print(f"\n## graceful stop (SIGTERM to the master with {opened} streams open)")
        print(f"gunicorn exited after {stop_secs:.1f} s; streams ended with the terminating chunk: {ended_clean}, "
              f"cut off: {ended_abrupt}")
        p99 = percentile(delays, 99)
        met = opened == args.streams >= TARGET_STREAMS and p99 < 1.0 and len(delays) == expected
        print(f"\ntarget ({TARGET_STREAMS:,} streams or more, every one opened, p99 < 1 s, every record to "
              f"every stream): {'met' if met else 'missed'}")
        if server.process.returncode not in (0, None):
            print(f"gunicorn exit status {server.process.returncode}; log tail:\n{server.log()[-2000:]}")
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
        server.stop()
        discard(work, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
