"""An MCP server on the official SDK (FastMCP), for the tests and the benchmark.

``python tools_server.py stdio [linger]`` serves on stdin/stdout (``linger``: and stays after its input
closes); ``python tools_server.py http PORT [json]``
serves Streamable HTTP on 127.0.0.1:PORT at /mcp (``json``: JSON answers instead of SSE streams).
"""

from __future__ import annotations

import os
import sys
import time

import anyio
from mcp.server.fastmcp import Context, FastMCP
from mcp.types import ToolAnnotations


def build(**options) -> FastMCP:
    server = FastMCP("test-tools", log_level="WARNING", **options)

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Say the text back.", annotations=ToolAnnotations(readOnlyHint=True))
    def echo(text: str) -> str:
        return text

    @server.tool(description="Fail with the reason given.")
    def fail(reason: str) -> str:
        raise ValueError(reason)

    @server.tool(description="Never answer.")
    async def hang() -> str:
        await anyio.sleep(3600)
        return "late"

    @server.tool(description="Exit the server process at once.")
    def crash(code: int = 3) -> str:
        print(f"crashing with code {code}", file=sys.stderr, flush=True)
        os._exit(code)

    @server.tool(description="The server's process id.")
    def pid() -> int:
        return os.getpid()

    @server.tool(description="An environment variable of the server process.")
    def environment(name: str) -> str:
        return os.environ.get(name, "<unset>")

    @server.tool(description="Add a tool named NAME, and tell the client its tool list changed.")
    async def learn(name: str, ctx: Context) -> str:
        def learned() -> str:
            return f"{name} was learned"

        server.add_tool(learned, name=name, description=f"Learned at run time: {name}")
        await ctx.session.send_tool_list_changed()
        return f"added {name}"

    return server


def main(argv: list[str]) -> None:
    if argv[1] == "stdio":
        print("tools server starting on stdio", file=sys.stderr, flush=True)
        build().run("stdio")
        if "linger" in argv[2:]:
            # A server that outlives its input: only signals stop it (the process group, the parent's death).
            time.sleep(3600)
        return
    port = int(argv[2])
    build(host="127.0.0.1", port=port, json_response="json" in argv[3:]).run("streamable-http")


if __name__ == "__main__":
    main(sys.argv)
