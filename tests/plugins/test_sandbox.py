"""The sandbox: the guest ABI, and the limits that stop a plugin without harming anything else."""

import subprocess
import sys
import threading
import time

import pytest

from app.plugins.manifest import read
from app.plugins.sandbox import Fault, Instance, LoadRefused, compile_program, grant_for
from tests.plugins import wat

MODULE_LIMIT = 4 * 1024 * 1024


def program(plugin_root, settings, name):
    manifest = read(plugin_root, name, MODULE_LIMIT)
    return compile_program(manifest, manifest.limits(settings), grant_for(manifest, settings))


def started(plugin_root, settings, name) -> Instance:
    return Instance.start(program(plugin_root, settings, name))


def test_the_example_answers_through_the_abi(plugin_root, settings_for):
    wat.copy_example(plugin_root)
    instance = started(plugin_root, settings_for(), "weather")
    assert instance.spec()["tools"][0]["name"] == "get_weather"
    answer = instance.execute({"tool": "get_weather", "arguments": {"city": "Nantes"}})
    assert answer == {"output": {"forecast": "sunny", "temperature_c": 21,
                                 "request": {"tool": "get_weather", "arguments": {"city": "Nantes"}}}}
    assert instance.memory_bytes == 65536


def test_a_plugin_that_loops_is_stopped_at_its_deadline(plugin_root, settings_for):
    wat.write_simple(plugin_root, "spin", "spin", wat.SPIN)
    instance = started(plugin_root, settings_for(max_execution_time_ms=200, max_fuel=10**15), "spin")
    began = time.monotonic()
    with pytest.raises(Fault) as stopped:
        instance.execute({"tool": "spin", "arguments": {}})
    assert stopped.value.kind == "time"
    assert "ran past its time limit of 200 ms" in stopped.value.reason
    assert 0.15 < time.monotonic() - began < 2.0


def test_a_plugin_runs_out_of_fuel(plugin_root, settings_for):
    wat.write_simple(plugin_root, "spin", "spin", wat.SPIN)
    instance = started(plugin_root, settings_for(max_fuel=1_000_000), "spin")
    with pytest.raises(Fault) as stopped:
        instance.execute({"tool": "spin", "arguments": {}})
    assert (stopped.value.kind, stopped.value.reason) == ("fuel", "used up its fuel (1000000 instructions)")


def test_a_plugin_that_grows_without_bound_hits_its_memory_cap(plugin_root, settings_for):
    wat.write_simple(plugin_root, "hog", "hog", wat.HOG, resources={"max_memory_mb": 8})
    instance = started(plugin_root, settings_for(), "hog")
    with pytest.raises(Fault) as stopped:
        instance.execute({"tool": "hog", "arguments": {}})
    assert stopped.value.kind == "memory"
    assert "reached its memory limit of 8 MiB" in stopped.value.reason
    assert instance.memory_bytes <= 8 * 1024 * 1024


def test_a_trap_is_reported(plugin_root, settings_for):
    wat.write_simple(plugin_root, "trap", "trap", wat.TRAP)
    with pytest.raises(Fault) as stopped:
        started(plugin_root, settings_for(), "trap").execute({"tool": "trap", "arguments": {}})
    assert (stopped.value.kind, stopped.value.reason) == ("trap", "trapped: wasm `unreachable` instruction executed")


def test_a_looping_plugin_does_not_hold_up_another(plugin_root, settings_for):
    wat.write_simple(plugin_root, "spin", "spin", wat.SPIN)
    wat.copy_example(plugin_root)
    settings = settings_for(max_execution_time_ms=1500, max_fuel=10**15)
    spinner, weather = started(plugin_root, settings, "spin"), started(plugin_root, settings, "weather")
    faults = []
    thread = threading.Thread(target=lambda: faults.append(_fault(spinner)))
    thread.start()
    time.sleep(0.1)
    began = time.monotonic()
    for _ in range(20):
        assert weather.execute({"tool": "get_weather", "arguments": {"city": "Lyon"}})["output"]["forecast"] == "sunny"
    assert time.monotonic() - began < 1.0
    thread.join(5)
    assert faults == ["time"]


def _fault(instance) -> str:
    try:
        instance.execute({"tool": "spin", "arguments": {}})
    except Fault as fault:
        return fault.kind
    return "none"


def test_answers_that_break_the_protocol_are_faults(plugin_root, settings_for):
    wat.write_simple(plugin_root, "prose", "prose", answer="not json at all")
    with pytest.raises(Fault, match="execute did not answer with JSON"):
        started(plugin_root, settings_for(), "prose").execute({"tool": "prose", "arguments": {}})
    wat.write_simple(plugin_root, "listy", "listy", answer="[1, 2]")
    with pytest.raises(Fault, match="execute must answer with a JSON object"):
        started(plugin_root, settings_for(), "listy").execute({"tool": "listy", "arguments": {}})


@pytest.mark.parametrize(("imports", "allow", "reason"), [
    ('(import "env" "host_secret" (func))', {}, "imports env.host_secret, which the host does not provide"),
    ('(import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))', {},
     "imports wasi_snapshot_preview1.proc_exit, but its [permissions] do not ask for wasi"),
])
def test_imports_nothing_grants_are_refused(plugin_root, settings_for, imports, allow, reason):
    wat.write_plugin(plugin_root, "needy", wat.module([wat.tool("needy")], "", imports=imports), ["needy"])
    with pytest.raises(LoadRefused) as refused:
        program(plugin_root, settings_for(**allow), "needy")
    assert reason in str(refused.value)


def test_wasi_needs_the_manifest_and_the_operator(plugin_root, settings_for):
    imports = '(import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))'
    wat.write_plugin(plugin_root, "wasi", wat.module([wat.tool("wasi")], "", imports=imports), ["wasi"],
                     permissions='wasi = true\nenv = {GREETING = "hi"}')
    with pytest.raises(LoadRefused, match="allow_wasi does not allow"):
        program(plugin_root, settings_for(), "wasi")
    instance = started(plugin_root, settings_for(allow_wasi=True), "wasi")
    assert instance.execute({"tool": "wasi", "arguments": {}}) == {"output": "done"}


def test_filesystem_access_needs_its_own_operator_switch(plugin_root, settings_for):
    imports = '(import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))'
    directory = wat.write_plugin(plugin_root, "files", wat.module([wat.tool("files")], "", imports=imports),
                                 ["files"], permissions='wasi = true\nfilesystem = ["data"]')
    (directory / "data").mkdir()
    (directory / "plugin.toml").write_text((directory / "plugin.toml").read_text())
    with pytest.raises(LoadRefused, match="allow_filesystem does not allow"):
        program(plugin_root, settings_for(allow_wasi=True), "files")
    assert started(plugin_root, settings_for(allow_wasi=True, allow_filesystem=True), "files").execute(
        {"tool": "files", "arguments": {}}) == {"output": "done"}


def test_a_module_without_the_abi_is_refused(plugin_root, settings_for):
    directory = wat.copy_example(plugin_root)
    import wasmtime

    (directory / "plugin.wasm").write_bytes(wasmtime.wat2wasm('(module (memory (export "memory") 1))'))
    with pytest.raises(LoadRefused, match="does not export alloc"):
        program(plugin_root, settings_for(), "weather")
    (directory / "plugin.wasm").write_bytes(b"\0asm garbage")
    with pytest.raises(LoadRefused, match="not a valid WebAssembly module"):
        program(plugin_root, settings_for(), "weather")


HUB_SCRIPT = """
from gevent import monkey; monkey.patch_all()
import sys, time, gevent
sys.path.insert(0, {root!r})
from pathlib import Path
from app.core.settings import load_settings
from app.plugins.manifest import read
from app.plugins.sandbox import Fault, Instance, compile_program, grant_for
settings = load_settings(Path({config!r}))
manifest = read(Path({plugins!r}), "spin", 1 << 20)
instance = Instance.start(compile_program(manifest, manifest.limits(settings), grant_for(manifest, settings)))
beats = []
def beat():
    while True:
        beats.append(time.monotonic()); gevent.sleep(0.01)
gevent.spawn(beat)
began = time.monotonic()
try:
    instance.execute({{"tool": "spin", "arguments": {{}}}})
except Fault as fault:
    print(fault.kind, round(time.monotonic() - began, 2), len(beats))
"""


def test_a_call_never_blocks_the_gevent_hub(plugin_root, settings_for, tmp_path):
    """In a gevent-patched process other greenlets keep running while a plugin spins until its deadline."""
    wat.write_simple(plugin_root, "spin", "spin", wat.SPIN)
    settings_for(max_execution_time_ms=500, max_fuel=10**15)
    script = HUB_SCRIPT.format(root=str(wat.ROOT), config=str(tmp_path / "sandbox.toml"), plugins=str(plugin_root))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    kind, elapsed, beats = done.stdout.split()
    assert kind == "time", done.stderr
    assert 0.4 < float(elapsed) < 2.0
    assert int(beats) >= 20  # a beat every 10 ms for half a second, give or take a loaded machine
