"""A WASM plugin tool called through the tool registry, against the same function in-process.

    .venv/bin/python bench/bench_plugins.py [--calls 2000] [--gevent] [--threads 4]

The plugin is the repository's example (examples/plugins/weather, written in WAT): its
``get_weather`` copies the request into a fixed forecast. Each call goes through
``app.agent.tools.execute``, as an agent turn's would: the argument check against the schema the
plugin's ``get_spec`` gave, the JSON request written into the instance's memory, the call in a
native thread under fuel, memory and epoch limits, the answer decoded. The baseline, measured in
the same run, is a registry tool whose handler builds the same answer in Python. Printed: calls
per second, p50 and p99 latency, and the ratio of calls/s to the baseline; with ``--threads N``,
N callers at once as well (one instance per worker serves one call at a time). ``--gevent``
patches the process as a served worker is. Nothing here asserts timings.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if "--gevent" in sys.argv:
    from gevent import monkey

    monkey.patch_all()

from app.agent.providers import ToolCall  # noqa: E402
from app.agent.tools import Tool, ToolContext, ToolRegistry, execute  # noqa: E402
from app.plugins.host import build  # noqa: E402
from app.plugins.manifest import read  # noqa: E402
from app.plugins.sandbox import Fault  # noqa: E402

EXAMPLE = ROOT / "examples" / "plugins" / "weather"
ARGUMENTS = {"city": "Paris"}


class Settings:
    """The operator limits the benchmark runs under (the defaults of [plugins])."""

    values = {"plugins.max_fuel": 10**9, "plugins.max_memory_mb": 64, "plugins.max_execution_time_ms": 5000,
              "plugins.allow_wasi": False, "plugins.allow_filesystem": False}

    def get(self, key):
        return self.values[key]


def in_process(arguments: dict, context) -> dict:
    return {"forecast": "sunny", "temperature_c": 21, "request": {"tool": "get_weather", "arguments": arguments}}


def registries(plugins_dir: Path) -> tuple[ToolRegistry, ToolRegistry]:
    loaded = build(read(plugins_dir, "weather", 1 << 20), Settings())
    spec = loaded.tools[0]

    def through_wasm(arguments: dict, context):
        try:
            return loaded.call("get_weather", arguments)["output"]
        except Fault as fault:
            return {"error": fault.reason}

    wasm, baseline = ToolRegistry(), ToolRegistry()
    wasm.register(Tool("get_weather", spec.description, spec.parameters, through_wasm, source="plugin:weather"))
    baseline.register(Tool("get_weather", spec.description, spec.parameters, in_process))
    return wasm, baseline


def measure(registry: ToolRegistry, calls: int, threads: int = 1) -> dict:
    tool, context = registry.get("get_weather"), ToolContext(settings=Settings())
    call = ToolCall("call_1", "get_weather", ARGUMENTS)
    for _ in range(min(50, calls)):
        assert not execute(tool, call, context).is_error
    latencies: list[float] = []

    def caller(count: int) -> None:
        for _ in range(count):
            before = time.perf_counter()
            result = execute(tool, call, context)
            latencies.append(time.perf_counter() - before)
            assert not result.is_error, result.content

    started = time.perf_counter()
    workers = [threading.Thread(target=caller, args=(calls // threads,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"calls_s": len(latencies) / elapsed, "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--gevent", action="store_true", help="patch the process as a served worker is")
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-plugins-"))
    try:
        shutil.copytree(EXAMPLE, workdir / "weather")
        wasm, baseline = registries(workdir)
        rows = [("in-process (baseline)", 1, measure(baseline, options.calls)),
                ("wasm plugin", 1, measure(wasm, options.calls))]
        if options.threads > 1:
            rows.append(("wasm plugin", options.threads, measure(wasm, options.calls, options.threads)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    base = rows[0][2]["calls_s"]
    mode = "gevent" if options.gevent else "threads"
    print(f"{options.calls} calls of get_weather through the tool registry ({mode})")
    print(f"{'path':<24}{'callers':>8}{'calls/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'ratio':>8}")
    for label, callers, figures in rows:
        print(f"{label:<24}{callers:>8}{figures['calls_s']:>12.0f}{figures['p50_ms']:>10.3f}"
              f"{figures['p99_ms']:>10.3f}{figures['calls_s'] / base:>8.3f}")


if __name__ == "__main__":
    main()
