"""The stdio transport: a child process speaking newline-delimited JSON-RPC on its stdin and stdout.

The child runs in its own process group, so stopping it also stops whatever
it started, and is told by the kernel to die with the worker that started it
(``PR_SET_PDEATHSIG``): a worker killed outright leaves no server behind. Its
stderr lines go to the logs under ``mcp::<name>``. It gets a small
environment (PATH, HOME, locale) and the table's ``env``, never the
gateway's own (which holds database and provider credentials).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading

from app.core.offhub import popen_class
from app.mcp.client import McpError
from app.mcp.config import ServerConfig

MAX_LINE_BYTES = 16 * 1024 * 1024
MAX_LOG_LINE_CHARS = 4000
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")
STOP_GRACE_SECS = 2.0
PR_SET_PDEATHSIG = 1

# Looked up before any fork: the child must not load libraries between fork and exec.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def child_env(extra: dict) -> dict:
    env = {key: os.environ[key] for key in INHERITED_ENV if key in os.environ}
    env.update(extra)
    return env


class StdioTransport:
    def __init__(self, config: ServerConfig):
        self.config = config
        self.log = logging.getLogger(f"mcp::{config.name}")
        self.process: subprocess.Popen | None = None
        self._write_guard = threading.Lock()
        self._closing = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, deliver, closed) -> None:
        argv = [self.config.command, *self.config.args]
        try:
            self.process = popen_class()(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=child_env(self.config.env), cwd=self.config.cwd or None,
                start_new_session=True, preexec_fn=_die_with_parent, close_fds=True,
            )
        except OSError as exc:
            raise McpError(f"cannot start {self.config.command}: {exc.strerror or exc}") from None
        threading.Thread(target=self._read, args=(deliver, closed), name=f"mcp-{self.config.name}-out",
                         daemon=True).start()
        threading.Thread(target=self._read_stderr, name=f"mcp-{self.config.name}-err", daemon=True).start()

    def negotiated(self, version: str) -> None:
        pass

    def send(self, message: dict, timeout: float) -> None:
        line = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        try:
            with self._write_guard:
                self.process.stdin.write(line)
                self.process.stdin.flush()
        except (OSError, ValueError):
            raise McpError("the server's input is closed") from None

    def close(self) -> None:
        """Stop the child and its process group: end of input, then SIGTERM, then SIGKILL."""
        self._closing = True
        process = self.process
        if process is None:
            return
        try:
            process.stdin.close()
        except OSError:
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self._wait(process, STOP_GRACE_SECS / 2 if sig == signal.SIGTERM else 0):
                break
            self._signal_group(process, sig)
            if self._wait(process, STOP_GRACE_SECS):
                break
        self._signal_group(process, signal.SIGKILL)  # whatever the server left running in its group

    @staticmethod
    def _wait(process, seconds: float) -> bool:
        try:
            process.wait(timeout=seconds)
            return True
        except subprocess.TimeoutExpired:
            return False

    @staticmethod
    def _signal_group(process, sig) -> None:
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _read(self, deliver, closed) -> None:
        stdout = self.process.stdout
        try:
            while True:
                line = stdout.readline(MAX_LINE_BYTES + 1)
                if not line:
                    break
                if len(line) > MAX_LINE_BYTES:
                    self.log.warning("a message was longer than %d bytes; closing", MAX_LINE_BYTES)
                    self._kill()
                    break
                message = _decode(line)
                if message is None:
                    self.log.warning("not JSON-RPC on stdout: %s", line[:200].decode("utf-8", "replace"))
                    continue
                deliver(message)
        except (OSError, ValueError):
            pass
        closed(self._exit_reason())

    def _exit_reason(self) -> str:
        if self._closing:
            return "closed by the gateway"
        code = self.process.poll() if self._wait(self.process, 1.0) else None
        if code is None:
            self._kill()
            return "the server closed its output"
        if code < 0:
            return f"the server was killed by signal {-code}"
        return f"the server exited with code {code}"

    def _kill(self) -> None:
        self._signal_group(self.process, signal.SIGKILL)

    def _read_stderr(self) -> None:
        try:
            for raw in iter(self.process.stderr.readline, b""):
                text = raw.decode("utf-8", "replace").rstrip()
                if text:
                    self.log.info("%s", text[:MAX_LOG_LINE_CHARS])
        except (OSError, ValueError):
            pass


def _decode(line: bytes):
    try:
        return json.loads(line)
    except ValueError:
        return None
