"""The WASM sandbox: a plugin's module compiled once, run in an instance that cannot harm the worker.

Every call runs in a native thread (``app.core.offhub.in_thread``: wasmtime
releases the GIL), never on the gevent hub, under three limits:

- fuel: at most ``Limits.fuel`` instructions, refilled before each call;
- memory: the instance's linear memory cannot grow past ``Limits.memory_bytes``
  (``Store.set_limits``; ``memory.grow`` fails beyond it);
- time: an epoch deadline. The engine's epoch is advanced by whoever waits on
  a call (the ``tick`` of ``in_thread``), at most once per ``TICK_SECS``
  whatever the number of calls waiting, so a deadline of n ticks is a
  wall-clock bound however many calls run at once.

A call that breaks a limit or traps ends with a ``Fault`` naming why; the
instance is then discarded by its owner (its memory may be half-written) and
the next call gets a fresh one. Imports are only WASI, and only when the
manifest asks for it and the operator allows it; anything else refuses to load.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field

import wasmtime

from app.core import offhub
from app.plugins.manifest import Limits, Manifest

TICK_SECS = 0.01
# A thread that outlives its epoch deadline by this much is given up on (it cannot be killed).
GRACE_SECS = 2.0
COMPILE_SECS = 60.0
MAX_SPEC_BYTES = 256 * 1024
MAX_OUTPUT_BYTES = 1024 * 1024
WASI_MODULE = "wasi_snapshot_preview1"
# A trap with the memory this close to its cap is reported as the cap's doing (memory.grow failed).
NEAR_CAP_BYTES = 1024 * 1024


class Fault(Exception):
    """A plugin call or load that did not produce a result; ``kind``: fuel, time, memory, trap or protocol."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class LoadRefused(Exception):
    """The module cannot run here: a missing export, an import nothing provides, a permission not allowed."""


_engine: wasmtime.Engine | None = None
_engine_lock = threading.Lock()
_last_tick = 0.0
_tick_lock = threading.Lock()


def engine() -> wasmtime.Engine:
    global _engine
    with _engine_lock:
        if _engine is None:
            config = wasmtime.Config()
            config.consume_fuel = True
            config.epoch_interruption = True
            _engine = wasmtime.Engine(config)
    return _engine


def tick() -> None:
    """Advance the epoch when a tick's worth of time has passed since the last advance."""
    global _last_tick
    now = time.monotonic()
    with _tick_lock:
        if now - _last_tick < TICK_SECS:
            return
        _last_tick = now
    engine().increment_epoch()


def deadline_ticks(time_ms: int) -> int:
    return max(1, math.ceil(time_ms / (TICK_SECS * 1000)))


@dataclass(frozen=True)
class Grant:
    """What the instance is given beyond its own memory: WASI, with read-only directories and environment."""

    wasi: bool = False
    directories: tuple[tuple[str, str], ...] = ()  # (host path, guest path)
    env: dict = field(default_factory=dict)


def grant_for(manifest: Manifest, settings) -> Grant:
    """What the manifest asks for, if the operator allows it; raises ``LoadRefused`` otherwise."""
    asked = manifest.permissions
    if not asked.wasi:
        return Grant()
    if not settings.get("plugins.allow_wasi"):
        raise LoadRefused("its [permissions] ask for wasi, which [plugins] allow_wasi does not allow")
    if asked.filesystem and not settings.get("plugins.allow_filesystem"):
        raise LoadRefused("its [permissions] ask for filesystem access, which [plugins] allow_filesystem "
                          "does not allow")
    directories = tuple((str(manifest.directory / path), f"/{path.strip('/')}") for path in asked.filesystem)
    return Grant(wasi=True, directories=directories, env=dict(asked.env))


@dataclass(frozen=True)
class Program:
    """A compiled, checked module with the limits and grant its instances run under."""

    name: str
    module: wasmtime.Module
    limits: Limits
    grant: Grant


def compile_program(manifest: Manifest, limits: Limits, grant: Grant) -> Program:
    """Compile off the hub (compiling is CPU work) and check the module against the guest ABI."""
    try:
        module = offhub.in_thread(wasmtime.Module, engine(), manifest.wasm, timeout=COMPILE_SECS)
    except offhub.OffHubError as exc:
        raise LoadRefused(f"it is not a valid WebAssembly module: {_first_line(exc)}") from None
    _check_imports(module, grant)
    _check_exports(module)
    return Program(name=manifest.name, module=module, limits=limits, grant=grant)


def _check_imports(module: wasmtime.Module, grant: Grant) -> None:
    for item in module.imports:
        if item.module == WASI_MODULE and grant.wasi:
            continue
        if item.module == WASI_MODULE:
            raise LoadRefused(f"the module imports {item.module}.{item.name}, but its [permissions] do not "
                              "ask for wasi")
        raise LoadRefused(f"the module imports {item.module}.{item.name}, which the host does not provide")


# Each function's (parameters, results), by value type name.
EXPORTS = {
    "memory": None,
    "alloc": (["i32"], ["i32"]),
    "get_spec": ([], ["i64"]),
    "execute": (["i32", "i32"], ["i64"]),
}


def _check_exports(module: wasmtime.Module) -> None:
    exported = {item.name: item.type for item in module.exports}
    for name, signature in EXPORTS.items():
        kind = exported.get(name)
        if kind is None:
            raise LoadRefused(f"the module does not export {name} (see docs/plugins.md, the guest ABI)")
        if signature is None:
            if not isinstance(kind, wasmtime.MemoryType):
                raise LoadRefused("the module's export memory is not a memory")
            continue
        if not isinstance(kind, wasmtime.FuncType) or _signature(kind) != signature:
            raise LoadRefused(f"the module's export {name} has the wrong signature (see docs/plugins.md)")


def _signature(kind: wasmtime.FuncType) -> tuple[list[str], list[str]]:
    return [str(value) for value in kind.params], [str(value) for value in kind.results]


class Instance:
    """One instance of a program and its store: one call at a time, each bounded by the program's limits."""

    def __init__(self, program: Program):
        self.program = program
        self.limits = program.limits
        self.memory_bytes = 0
        self._lock = threading.Lock()
        self._store = wasmtime.Store(engine())
        self._store.set_limits(memory_size=self.limits.memory_bytes)
        self._exports = None

    @classmethod
    def start(cls, program: Program) -> Instance:
        """Instantiate (its start function runs under the same limits as a call)."""
        instance = cls(program)
        instance._run(instance._instantiate)
        return instance

    def spec(self) -> dict:
        return _json_object(self._run(lambda: self._read(self._exports["get_spec"](self._store), MAX_SPEC_BYTES)),
                            "get_spec")

    def execute(self, request: dict) -> dict:
        payload = json.dumps(request, ensure_ascii=False).encode()
        return _json_object(self._run(lambda: self._execute(payload)), "execute")

    # ---- inside the native thread ---------------------------------------------------

    def _instantiate(self) -> None:
        linker = wasmtime.Linker(engine())
        grant = self.program.grant
        if grant.wasi:
            wasi = wasmtime.WasiConfig()
            wasi.env = list(grant.env.items())
            for host_path, guest_path in grant.directories:
                wasi.preopen_dir(host_path, guest_path, fs_mutable=False)
            self._store.set_wasi(wasi)
            linker.define_wasi()
        instance = linker.instantiate(self._store, self.program.module)
        self._exports = instance.exports(self._store)

    def _execute(self, payload: bytes) -> bytes:
        address = self._exports["alloc"](self._store, len(payload))
        memory = self._exports["memory"]
        if not isinstance(address, int) or address < 0 or address + len(payload) > memory.data_len(self._store):
            raise Fault("protocol", f"alloc({len(payload)}) returned {address}, outside its memory")
        memory.write(self._store, payload, address)
        return self._read(self._exports["execute"](self._store, address, len(payload)), MAX_OUTPUT_BYTES)

    def _read(self, packed: int, limit: int) -> bytes:
        packed &= 0xFFFF_FFFF_FFFF_FFFF
        address, length = packed >> 32, packed & 0xFFFF_FFFF
        memory = self._exports["memory"]
        if length > limit:
            raise Fault("protocol", f"its answer is {length} bytes; at most {limit} are read")
        if address + length > memory.data_len(self._store):
            raise Fault("protocol", "its answer points outside its memory")
        return bytes(memory.read(self._store, address, address + length))

    def _guarded(self, work):
        """Run ``work`` with fresh fuel and a deadline; never raises (a thread's exception would lose its kind)."""
        self._store.set_fuel(self.limits.fuel)
        self._store.set_epoch_deadline(deadline_ticks(self.limits.time_ms))
        try:
            outcome = ("ok", work())
        except Fault as fault:
            outcome = ("fault", fault.kind, fault.reason)
        except wasmtime.Trap as trap:
            outcome = ("fault", *self._describe(trap))
        except wasmtime.WasmtimeError as exc:
            outcome = ("fault", "trap", _first_line(exc))
        finally:
            self._measure()
        return outcome

    def _measure(self) -> None:
        if self._exports is not None:
            self.memory_bytes = self._exports["memory"].data_len(self._store)

    def _describe(self, trap: wasmtime.Trap) -> tuple[str, str]:
        code = trap.trap_code
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return "fuel", f"used up its fuel ({self.limits.fuel} instructions)"
        if code == wasmtime.TrapCode.INTERRUPT:
            return "time", f"ran past its time limit of {self.limits.time_ms} ms"
        self._measure()
        if self.memory_bytes + NEAR_CAP_BYTES > self.limits.memory_bytes:
            return "memory", (f"reached its memory limit of {self.limits.memory_bytes // (1024 * 1024)} MiB "
                              f"and trapped: {_trap_message(trap)}")
        return "trap", f"trapped: {_trap_message(trap)}"

    # ---- on the calling greenlet ----------------------------------------------------

    def _run(self, work):
        with self._lock:
            try:
                outcome = offhub.in_thread(self._guarded, work, timeout=self.limits.time_ms / 1000 + GRACE_SECS,
                                           tick=tick, tick_secs=TICK_SECS)
            except offhub.TimedOut:
                # The thread still runs in this store: the store must never be used again.
                raise Fault("time", f"ran past its time limit of {self.limits.time_ms} ms") from None
            except offhub.OutOfMemory:
                raise Fault("memory", "the host ran out of memory during the call") from None
            except offhub.Crashed as exc:
                raise Fault("trap", str(exc)) from None
        if outcome[0] == "fault":
            raise Fault(outcome[1], outcome[2])
        return outcome[1]


def _json_object(raw: bytes, export: str) -> dict:
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Fault("protocol", f"{export} did not answer with JSON") from None
    if not isinstance(value, dict):
        raise Fault("protocol", f"{export} must answer with a JSON object")
    return value


def _trap_message(trap: wasmtime.Trap) -> str:
    lines = [line.strip() for line in str(trap).splitlines() if line.strip()]
    wasm_lines = [line for line in lines if line.startswith("wasm trap:")]
    return (wasm_lines or lines or [type(trap).__name__])[-1].removeprefix("wasm trap: ")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def module_bytes_limit(settings) -> int:
    return settings.get("plugins.max_module_mb") * 1024 * 1024

