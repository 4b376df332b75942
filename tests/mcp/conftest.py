"""MCP servers for the tests: the SDK's FastMCP over stdio and Streamable HTTP, and a scripted one."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from app.mcp.config import parse
from tests.support.server import free_port
from tests.support.wait import wait_until

SERVERS = Path(__file__).resolve().parent / "servers"
TOOLS_SERVER = str(SERVERS / "tools_server.py")
SCRIPTED_SERVER = str(SERVERS / "scripted_server.py")


def stdio_table(args: tuple = ("stdio",), script: str = TOOLS_SERVER, **extra) -> dict:
    return {"transport": "stdio", "command": sys.executable, "args": [script, *args], **extra}


def stdio_config(name: str = "tools", args: tuple = ("stdio",), script: str = TOOLS_SERVER, **extra):
    return parse(name, stdio_table(args, script, **extra))


def scripted_config(*args: str, name: str = "scripted"):
    return stdio_config(name, args, SCRIPTED_SERVER)


def http_config(url: str, name: str = "web", **extra):
    return parse(name, {"transport": "http", "url": url, **extra})


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def http_server(*options: str):
    """The FastMCP tools server on Streamable HTTP (uvicorn on 127.0.0.1); yields its URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, TOOLS_SERVER, "http", str(port), *options],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: process.poll() is not None or _accepts(port), 30, 0.05, "the MCP HTTP server")
        assert process.poll() is None, "the MCP HTTP server exited"
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


@pytest.fixture(scope="module")
def http_url():
    with http_server() as url:
        yield url


@pytest.fixture(scope="module")
def http_json_url():
    with http_server("json") as url:
        yield url
