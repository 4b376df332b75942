"""Requests/s and p99 latency of the status endpoints against bare Flask, same gunicorn settings, same run.

    .venv/bin/python bench/bench_status.py [--duration 10] [--connections 16] [--threads 1] [--rounds 1]

Three targets, each served by its own gunicorn master on 127.0.0.1 with the
project's gunicorn settings (gevent workers, same worker count, same
worker_connections; see bench/gunicorn_bare.conf.py for the baseline):

- bare:   bench/bare_flask.py, ``GET /health`` returning ``{"healthy": true}``
- health: Lockgate ``GET /api/v1/status/health`` (no token)
- status: Lockgate ``GET /api/v1/status`` with a read token

Lockgate runs on a fresh temp data dir with its default SQLite database and
generous limits (``[rate_limits] default = probes = "1000000/s"``): the
limiter counts every request but never rejects. A last phase runs the same
two Lockgate targets on the default limits and reports every status code
seen (429s included), since that is the code path a default deployment takes.

Load comes from wrk (``apt-get install -y wrk``) with bench/wrk_status.lua,
which adds the Authorization header and counts status codes. Ratios are
Lockgate / bare: 1.0 means as fast as the bare route. The targets are by
worker CPU per request (bare / target): authenticated status >= 0.7 and the
health probe >= 0.8. Nothing here asserts: it prints figures.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._server import MachineLoad, cpu_seconds, deployment, discard, machine  # noqa: E402
from tests.support.server import GunicornServer  # noqa: E402

LUA = ROOT / "bench" / "wrk_status.lua"
GENEROUS = {"rate_limits": {"default": "1000000/s", "probes": "1000000/s"}}


def wrk(url: str, token: str, args, duration: float) -> dict:
    cmd = ["wrk", "--latency", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{duration:g}s",
           "--timeout", "5s", "-s", str(LUA), url]
    if token:
        cmd += ["--", token]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")
    fields = dict(part.split("=", 1) for part in line.split()[1:])
    requests = int(fields["requests"])
    seconds = int(fields["duration_us"]) / 1e6
    statuses = {}
    for part in filter(None, fields["statuses"].split(",")):
        code, count = part.split(":")
        statuses[int(code)] = int(count)
    shown = ["$TOKEN" if token and c == token else c for c in cmd]
    return {
        "rps": requests / seconds,
        "requests": requests,
        "p50_ms": int(fields["p50_us"]) / 1000,
        "p99_ms": int(fields["p99_us"]) / 1000,
        "max_ms": int(fields["max_us"]) / 1000,
        "errors": {k: int(fields[k]) for k in ("connect_err", "read_err", "write_err", "timeout_err")},
        "statuses": statuses,
        "command": " ".join(shown),
        "raw": out.stdout,
    }


def describe(result: dict) -> str:
    statuses = " ".join(f"{code}x{count}" for code, count in sorted(result["statuses"].items()))
    errors = " ".join(f"{k}={v}" for k, v in result["errors"].items() if v)
    return (f"{result['rps']:9.0f} req/s  p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
            f"max {result['max_ms']:7.1f} ms  worker CPU {result.get('cpu_ms_per_req', 0):.3f} ms/req  "
            f"statuses {statuses}" + (f"  errors {errors}" if errors else ""))


def measure(targets: dict, args) -> dict[str, list[dict]]:
    """targets: name -> (url, token, server); rounds interleave the targets."""
    results = {name: [] for name in targets}
    for round_no in range(1, args.rounds + 1):
        for name, (url, token, server) in targets.items():
            if args.warmup > 0:
                wrk(url, token, args, args.warmup)
            pids = server.worker_pids()
            before = cpu_seconds(pids)
            load = MachineLoad(lambda pids=pids: pids)
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            result = wrk(url, token, args, args.duration)
            result["cpu_ms_per_req"] = 1000 * (cpu_seconds(pids) - before) / max(1, result["requests"])
            machine_load = load.stop()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            wrk_cores = (after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime) / args.duration
            machine_load["ours_cores"] += wrk_cores
            machine_load["other_cores"] = max(0.0, machine_load["busy_cores"] - machine_load["ours_cores"])
            result["load"] = machine_load
            results[name].append(result)
            print(f"  round {round_no} {name:<7} {describe(result)}", flush=True)
            print(f"          {'':<7} {MachineLoad.describe(result['load'])}", flush=True)
            if args.verbose:
                print(result["raw"])
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per target and round")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load before each (0: none)")
    parser.add_argument("--connections", type=int, default=16,
                        help="wrk connections (-c); more only adds queueing, and new connections wait for "
                             "accept() while the workers are saturated, which inflates p99")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (-t); the client shares the CPUs")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the three targets; medians reported")
    parser.add_argument("--workers", type=int, default=None,
                        help="gunicorn workers for all servers (default: what gunicorn.conf.py picks)")
    parser.add_argument("--skip-default-limits", action="store_true", help="skip the default-limits phase")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (logs, databases)")
    parser.add_argument("--verbose", action="store_true", help="print wrk's own output too")
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="lockgate-bench-status-"))
    servers: list[GunicornServer] = []
    try:
        lockgate = deployment(work / "lockgate", GENEROUS, args.workers)
        bare = deployment(work / "bare", None, args.workers, app="bench.bare_flask:app",
                          conf_file="bench/gunicorn_bare.conf.py", health_path="/health")
        settings = lockgate.settings()
        bare.workers = settings["workers"]
        lockgate.workers = settings["workers"]

        print("# bench_status")
        print(f"machine: {machine()}")
        print(f"gunicorn (both): worker_class={settings['worker_class']} workers={settings['workers']} "
              f"worker_connections={settings['worker_connections']} keepalive={settings['keepalive']} "
              f"timeout={settings['timeout']}")
        print(f"wrk: -t {args.threads} -c {args.connections} -d {args.duration:g}s --latency, "
              f"warm-up {args.warmup:g}s per target, rounds {args.rounds}")
        print(f"lockgate command: {' '.join(lockgate.command)}")
        print(f"bare command:     {' '.join(bare.command)}")
        print(f"lockgate config ({lockgate.config_path}):")
        print("  " + lockgate.config_path.read_text().strip().replace("\n", "\n  "))
        print(f"work dir: {work}")

        servers += [bare, lockgate]
        bare.start(settle=1.0)
        lockgate.start(settle=1.0)
        token = lockgate.cli_token("read", name="bench-status")

        targets = {
            "bare": (f"{bare.url}/health", "", bare),
            "health": (f"{lockgate.url}/api/v1/status/health", "", lockgate),
            "status": (f"{lockgate.url}/api/v1/status", token, lockgate),
        }
        print("\n## generous limits (limiter counts, never rejects)")
        for name, (url, tok, _srv) in targets.items():
            print(f"  {name:<7} GET {url}" + ("  (Authorization: Bearer <read token>)" if tok else ""))
        results = measure(targets, args)

        def median(name, key):
            return statistics.median(r[key] for r in results[name])

        def paired_cpu_ratio(name):
            # Each round's bare run is its own baseline: the machine's speed drifts between rounds.
            return statistics.median(b["cpu_ms_per_req"] / t["cpu_ms_per_req"]
                                     for b, t in zip(results["bare"], results[name], strict=True))

        base_rps, base_p99 = median("bare", "rps"), median("bare", "p99_ms")
        print("\n## summary (medians over rounds)")
        print(f"  {'target':<8}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>10}{'CPU ms/req':>12}"
              f"{'rps ratio':>11}{'p99 ratio':>11}{'CPU ratio':>11}")
        for name in targets:
            rps, p99, cpu = median(name, "rps"), median(name, "p99_ms"), median(name, "cpu_ms_per_req")
            print(f"  {name:<8}{rps:>10.0f}{median(name, 'p50_ms'):>9.2f}{p99:>10.2f}{cpu:>12.3f}"
                  f"{rps / base_rps:>11.2f}{p99 / base_p99:>11.2f}{paired_cpu_ratio(name):>11.2f}")
        print("  (rps ratio = target req/s / bare req/s; p99 ratio = target p99 / bare p99, lower is better;")
        print("   CPU ratio = bare worker CPU per request / target worker CPU per request, within each round,")
        print("   median over rounds; short rounds, many of them, keep the machine's drift out of it)")
        # The targets compare worker CPU per request: throughput also moves with whatever else runs.
        for name, target in (("status", 0.7), ("health", 0.8)):
            ratio = paired_cpu_ratio(name)
            print(f"  {name} / bare Flask by worker CPU per request = {ratio:.2f} "
                  f"(target >= {target}: {'met' if ratio >= target else 'missed'})")
        worst = max(r["load"]["other_cores"] for rs in results.values() for r in rs)
        print(f"  other processes used up to {worst:.2f} cores during a measurement"
              + ("  -- the machine was not quiet: compare CPU ms/req, or run again" if worst > 0.1 else ""))
        non_200 = {name: {c: n for r in rs for c, n in r["statuses"].items() if c != 200}
                   for name, rs in results.items()}
        print(f"  non-200 responses: {non_200}")

        lockgate.stop()
        bare.stop()

        if not args.skip_default_limits:
            defaults = deployment(work / "lockgate-default-limits", None, settings["workers"])
            servers.append(defaults)
            print("\n## default limits (no [rate_limits] section: default 30/s per token, probes 1000/s per address)")
            print(f"command: {' '.join(defaults.command)}")
            defaults.start(settle=1.0)
            token = defaults.cli_token("read", name="bench-status")
            targets = {
                "health": (f"{defaults.url}/api/v1/status/health", "", defaults),
                "status": (f"{defaults.url}/api/v1/status", token, defaults),
            }
            default_args = argparse.Namespace(**{**vars(args), "rounds": 1})
            for name, result in measure(targets, default_args).items():
                r = result[0]
                rejected = r["statuses"].get(429, 0)
                print(f"  {name}: {r['statuses'].get(200, 0)} x 200 and {rejected} x 429 of {r['requests']} "
                      f"({100 * rejected / max(1, r['requests']):.1f}% rejected)")
            defaults.stop()
    finally:
        for server in servers:
            server.stop()
        discard(work, args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
