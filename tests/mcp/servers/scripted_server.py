"""A stdio MCP server written from the specification, for what the SDK's servers do not do on request.

It counters the client's protocol version with the one given (``--version``), pages ``tools/list``
over two pages, and its tool ``ask`` sends the client the requests a server may send (ping,
sampling, roots, elicitation) and returns the answers it got. ``--silent`` answers nothing at all.
"""

from __future__ import annotations

import argparse
import json
import sys

PAGES = {None: ([{"name": "first", "description": "On page one", "inputSchema": {"type": "object"}}], "page-2"),
         "page-2": ([{"name": "second", "description": "On page two", "inputSchema": {"type": "object"}}], None)}
ASKED = ("ping", "sampling/createMessage", "roots/list", "elicitation/create")


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def receive() -> dict | None:
    line = sys.stdin.readline()
    return json.loads(line) if line else None


def text_result(request_id, text: str) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "result": {"content": [{"type": "text", "text": text}]}}


def ask_client() -> dict:
    answers = {}
    for number, method in enumerate(ASKED, start=1):
        send({"jsonrpc": "2.0", "id": f"s{number}", "method": method, "params": {}})
        reply = receive()
        answers[method] = reply.get("error", {}).get("code") if "error" in reply else reply.get("result")
    return answers


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", default="2025-03-26")
    parser.add_argument("--silent", action="store_true")
    options = parser.parse_args()
    offered = None
    while (message := receive()) is not None:
        if options.silent or "id" not in message:
            continue
        method, request_id = message.get("method"), message["id"]
        if method == "initialize":
            offered = message["params"]["protocolVersion"]
            send({"jsonrpc": "2.0", "id": request_id, "result": {
                "protocolVersion": options.version, "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": "scripted", "version": "1"}}})
        elif method == "tools/list":
            tools, cursor = PAGES[(message.get("params") or {}).get("cursor")]
            result = {"tools": tools, **({"nextCursor": cursor} if cursor else {})}
            send({"jsonrpc": "2.0", "id": request_id, "result": result})
        elif method == "tools/call" and message["params"]["name"] == "ask":
            send(text_result(request_id, json.dumps(ask_client())))
        elif method == "tools/call":
            send(text_result(request_id, f"called {message['params']['name']}; offered {offered}"))
        else:
            send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": "no such method"}})


if __name__ == "__main__":
    main()
