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
    pass


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")


# ---- subprocess ---------------------------------------------------------------------


def _popen(argv: list[str]) -> subprocess.Popen:
    # gevent's Popen waits on the child through the hub; the standard one would block it.
    popen = subprocess.Popen
    if _gevent_patched():
        from gevent.subprocess import Popen as popen
    return popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


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
        raise Crashed(f"{_name(fn)} raised {value}")
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
        reply = ("error", f"{type(exc).__name__}: {exc}")
    try:
        data = pickle.dumps(reply)
    except Exception as exc:
        data = pickle.dumps(("error", f"its result could not be returned: {exc}"))
    answer.write(data)
    answer.flush()


# ---- native thread ------------------------------------------------------------------

_executor: ThreadPoolExecutor | None = None


def in_thread(fn, *args, timeout: float, **kwargs):
    """``fn(*args, **kwargs)`` in a native thread; the caller waits cooperatively at most ``timeout`` s."""
    try:
        return _run_in_thread(fn, args, kwargs, timeout)
    except MemoryError as exc:
        raise OutOfMemory(f"{_name(fn)} ran out of memory") from exc
    except (FutureTimeout, TimeoutError) as exc:
        raise TimedOut(f"{_name(fn)} did not finish within {timeout:g}s") from exc
    except Exception as exc:
        raise Crashed(f"{_name(fn)} raised {type(exc).__name__}: {exc}") from exc


def _run_in_thread(fn, args, kwargs, timeout: float):
    if not _gevent_patched():
        return _thread_pool().submit(fn, *args, **kwargs).result(timeout=timeout)
    import gevent

    try:
        return gevent.get_hub().threadpool.spawn(fn, *args, **kwargs).get(timeout=timeout)
    except gevent.Timeout:  # a BaseException: it must not pass for the function's own error
        raise TimeoutError from None


def _thread_pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="offhub")
    return _executor
