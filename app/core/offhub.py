"""The one place for work that must not run on the gevent hub: CPU-heavy analysis, WASM calls.

A greenlet that computes for a second freezes every request of its worker,
so such work goes elsewhere and the greenlet waits cooperatively:

- ``in_subprocess`` runs a function in a fresh interpreter with limits the
  child sets on itself (address space, CPU seconds) and a wall-clock timeout
  after which the parent kills it. For untrusted or unbounded work: nothing
  it does can take the worker down.
- ``in_thread`` runs a function in a native thread (gevent's threadpool in a
  served worker), for C code that releases the GIL. A thread cannot be
  killed: on timeout the caller is freed, the thread runs on to its end.

Either returns the function's result or raises ``TimedOut``, ``OutOfMemory``
or ``Crashed`` (with the child's message), all ``OffHubError``.
"""

from __future__ import annotations

import os
import pickle
import resource
import signal
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

MAX_STDERR_CHARS = 2000
ROOT = Path(__file__).resolve().parents[2]
# The child finds this package (and the function's module) from wherever the worker runs.
CHILD_MAIN = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from app.core.offhub import _child; _child()"


class OffHubError(Exception):
    """Work run off the hub did not return a result."""


class TimedOut(OffHubError):
    pass


class OutOfMemory(OffHubError):
    pass


class Crashed(OffHubError):
    """``kind`` and ``detail``: the class name and message of the exception the function raised, when it raised
    one, so a caller can tell an expected refusal (bad input) from a fault."""

    def __init__(self, message: str, kind: str | None = None, detail: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.detail = detail


def gevent_patched() -> bool:
    """Whether gevent has patched this process (a gunicorn worker): greenlets, not threads."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


def popen_class() -> type[subprocess.Popen]:
    # gevent's Popen waits on the child through the hub; the standard one would block it.
    if gevent_patched():
        from gevent.subprocess import Popen
        return Popen
    return subprocess.Popen


# ---- subprocess ---------------------------------------------------------------------


def _popen(argv: list[str]) -> subprocess.Popen:
    return popen_class()(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def in_subprocess(fn, *args, timeout: float, memory_mb: int | None = None, cpu_secs: int | None = None,
                  **kwargs):
    """``fn(*args, **kwargs)`` in a child interpreter; ``fn``, arguments and result must pickle.

    ``memory_mb`` bounds what the call may allocate beyond the child's
    footprint once ``fn`` is imported; ``cpu_secs`` bounds its CPU time;
    ``timeout`` bounds the wall-clock time, start-up included.
    """
    request = pickle.dumps((fn, args, kwargs, memory_mb, cpu_secs))
    child = _popen([sys.executable, "-c", CHILD_MAIN])
    try:
        out, err = child.communicate(request, timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise TimedOut(f"{_name(fn)} did not finish within {timeout:g}s") from None
    return _result(fn, child.returncode, out, err.decode(errors="replace")[-MAX_STDERR_CHARS:])


def _name(fn) -> str:
    return getattr(fn, "__qualname__", repr(fn))


def _result(fn, returncode: int, out: bytes, err: str):
    if returncode == 0 and out:
        status, value = pickle.loads(out)
        if status == "ok":
            return value
        if status == "oom":
            raise OutOfMemory(f"{_name(fn)} ran out of memory: {value}")
        kind, detail = value
        raise Crashed(f"{_name(fn)} raised {f'{kind}: ' if kind else ''}{detail}", kind=kind, detail=detail)
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL) and "MemoryError" not in err:
        raise TimedOut(f"{_name(fn)} used up its CPU time")
    if "MemoryError" in err or "Cannot allocate memory" in err:
        raise OutOfMemory(f"{_name(fn)} ran out of memory")
    raise Crashed(f"{_name(fn)} exited with status {returncode}: {err.strip() or 'no output'}")


def _address_space_now() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _limit(memory_mb: int | None, cpu_secs: int | None) -> None:
    if memory_mb is not None:
        cap = _address_space_now() + memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    if cpu_secs is not None:
        # The soft limit sends SIGXCPU (which ends the child); the hard one kills it a second later.
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_secs, cpu_secs + 1))


def _child() -> None:
    """The child's side: read the call from stdin, answer on what was stdout."""
    answer = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever the function prints must not corrupt the answer
    fn, args, kwargs, memory_mb, cpu_secs = pickle.loads(sys.stdin.buffer.read())
    _limit(memory_mb, cpu_secs)
    try:
        reply = ("ok", fn(*args, **kwargs))
    except MemoryError as exc:
        reply = ("oom", str(exc) or "MemoryError")
    except Exception as exc:
        traceback.print_exc()
        reply = ("error", (type(exc).__name__, str(exc)))
    try:
        data = pickle.dumps(reply)
    except Exception as exc:
        data = pickle.dumps(("error", (None, f"its result could not be returned: {exc}")))
    answer.write(data)
    answer.flush()


# ---- native thread ------------------------------------------------------------------

_executor: ThreadPoolExecutor | None = None


def in_thread(fn, *args, timeout: float, tick=None, tick_secs: float = 0.01, **kwargs):
    """``fn(*args, **kwargs)`` in a native thread; the caller waits cooperatively at most ``timeout`` s.

    With ``tick``, the waiting caller calls ``tick()`` every ``tick_secs`` until the function returns:
    a clock the function can be stopped by (a WASM call's epoch deadline) without a thread of its own.
    """
    try:
        return _run_in_thread(fn, args, kwargs, timeout, tick, tick_secs)
    except MemoryError as exc:
        raise OutOfMemory(f"{_name(fn)} ran out of memory") from exc
    except (FutureTimeout, TimeoutError) as exc:
        raise TimedOut(f"{_name(fn)} did not finish within {timeout:g}s") from exc
    except Exception as exc:
        raise Crashed(f"{_name(fn)} raised {type(exc).__name__}: {exc}") from exc


def _run_in_thread(fn, args, kwargs, timeout: float, tick=None, tick_secs: float = 0.01):
    if not gevent_patched():
        future = _thread_pool().submit(fn, *args, **kwargs)
        return _wait_ticking(lambda step: future.result(timeout=step), FutureTimeout, timeout, tick, tick_secs)
    import gevent

    pending = gevent.get_hub().threadpool.spawn(fn, *args, **kwargs)
    try:
        return _wait_ticking(lambda step: pending.get(timeout=step), gevent.Timeout, timeout, tick, tick_secs)
    except gevent.Timeout:  # a BaseException: it must not pass for the function's own error
        raise TimeoutError from None


def _wait_ticking(get, waited_out, timeout: float, tick, tick_secs: float):
    if tick is None:
        return get(timeout)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            return get(max(0.0, min(left, tick_secs)))
        except waited_out:
            if left <= tick_secs:
                raise
        tick()


def _thread_pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="offhub")
    return _executor
