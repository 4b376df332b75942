"""An MCP tool called through the tool registry, over stdio and Streamable HTTP, against the same function in-process.

    .venv/bin/python bench/bench_mcp.py [--calls 2000] [--gevent]

The server is the official SDK's FastMCP (tests/mcp/servers/tools_server.py), its tool ``add``;
the client is Lockgate's (app/mcp), and each call goes through ``app.agent.tools.execute``, as an
agent turn's would (argument check against the server's schema, result rendering). Printed per
path: calls per second (one caller at a time), p50 and p99 latency, and the ratio of its calls/s
to the baseline measured in the same run: a registry tool whose handler adds in-process. Without
``--gevent``, the SDK's own asyncio client over stdio is measured as well, as a second reference
(``--gevent`` patches the process as a served worker is, where that client does not run).
Nothing here asserts timings.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if "--gevent" in sys.argv:
    from gevent import monkey

    monkey.patch_all()

from app.agent.providers import ToolCall  # noqa: E402
from app.agent.tools import Tool, ToolContext, ToolRegistry, execute  # noqa: E402
from app.mcp.client import Session  # noqa: E402
from app.mcp.http import HttpTransport  # noqa: E402
from app.mcp.stdio import StdioTransport  # noqa: E402
from app.mcp.tools import install  # noqa: E402
from tests.mcp.conftest import TOOLS_SERVER, http_config, http_server, stdio_config  # noqa: E402

CONTEXT = ToolContext(settings=None)
ADD_SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
              "required": ["a", "b"]}


def measure(call, calls: int) -> dict:
    for number in range(min(50, calls)):  # warm-up: connections, caches
        call(number)
    latencies = []
    started = time.perf_counter()
    for number in range(calls):
        before = time.perf_counter()
        call(number)
        latencies.append(time.perf_counter() - before)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"per_sec": calls / elapsed, "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}


def registry_caller(registry: ToolRegistry, name: str):
    tool = registry.get(name)

    def call(number: int) -> None:
        result = execute(tool, ToolCall(id=f"c{number}", name=name, arguments={"a": number, "b": 1}), CONTEXT)
        if result.is_error or result.content != str(number + 1):
            raise RuntimeError(f"unexpected result: {result}")

    return call


def in_process() -> dict:
    registry = ToolRegistry()
    registry.register(Tool("local__add", "Add two integers.", ADD_SCHEMA, lambda args, ctx: str(args["a"] + args["b"])))
    return registry_caller(registry, "local__add")


def over(config, transport):
    session = Session(transport, config.name)
    session.open(30)
    registry = ToolRegistry()
    install(registry, config, session, session.list_tools(30))
    return session, registry_caller(registry, config.registry_name("add"))


def sdk_stdio(calls: int) -> dict:
    import asyncio

    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    async def run() -> dict:
        parameters = StdioServerParameters(command=sys.executable, args=[TOOLS_SERVER, "stdio"])
        async with stdio_client(parameters) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            for number in range(50):
                await session.call_tool("add", {"a": number, "b": 1})
            latencies = []
            started = time.perf_counter()
            for number in range(calls):
                before = time.perf_counter()
                await session.call_tool("add", {"a": number, "b": 1})
                latencies.append(time.perf_counter() - before)
            elapsed = time.perf_counter() - started
        latencies.sort()
        return {"per_sec": calls / elapsed, "p50_ms": statistics.median(latencies) * 1000,
                "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000}

    return asyncio.run(run())


def report(name: str, figures: dict, baseline: float) -> None:
    print(f"{name:<28} {figures['per_sec']:>10.0f}/s  p50 {figures['p50_ms']:7.3f} ms  "
          f"p99 {figures['p99_ms']:7.3f} ms  ratio {figures['per_sec'] / baseline:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--gevent", action="store_true")
    options = parser.parse_args()

    baseline = measure(in_process(), options.calls)
    print(f"{options.calls} sequential calls of add through the registry"
          f"{' (gevent-patched, as a served worker)' if options.gevent else ''}")
    report("in-process (baseline)", baseline, baseline["per_sec"])

    config = stdio_config("bench", timeout_secs=30)
    session, call = over(config, StdioTransport(config))
    try:
        report("MCP stdio", measure(call, options.calls), baseline["per_sec"])
    finally:
        session.close()

    for mode, extra in (("sse", ()), ("json", ("json",))):
        with http_server(*extra) as url:
            config = http_config(url, "bench", timeout_secs=30)
            session, call = over(config, HttpTransport(config, allow_private=True))
            try:
                report(f"MCP Streamable HTTP ({mode})", measure(call, options.calls), baseline["per_sec"])
            finally:
                session.close()

    if not options.gevent:
        report("SDK client, stdio (ref.)", sdk_stdio(options.calls), baseline["per_sec"])


if __name__ == "__main__":
    main()
