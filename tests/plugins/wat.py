"""Plugins for the tests, written in WAT and built with ``wasmtime.wat2wasm``: each a directory the gateway admits.

Every module follows the guest ABI of docs/plugins.md: ``memory``, ``alloc``,
``get_spec`` (the tools, from data at address 0) and ``execute``, whose body
differs: answer a fixed JSON text, spin, grow memory, count for a while.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import wasmtime

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugins" / "weather"
ANSWER_AT = 4096


def _wat_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def module(tools: list[dict], execute: str, answer: str = '{"output":"done"}', imports: str = "",
           memory_pages: int = 1) -> str:
    """A module whose ``execute`` runs ``execute`` (WAT instructions) and then answers ``answer``."""
    spec = json.dumps({"tools": tools}, separators=(",", ":"))
    assert len(spec) < ANSWER_AT
    packed_spec = len(spec.encode())
    packed_answer = (ANSWER_AT << 32) | len(answer.encode())
    return f"""(module
  {imports}
  (memory (export "memory") {memory_pages})
  (data (i32.const 0) "{_wat_string(spec)}")
  (data (i32.const {ANSWER_AT}) "{_wat_string(answer)}")
  (func (export "alloc") (param $len i32) (result i32)
    (local $pages i32)
    (local.set $pages (i32.sub (i32.div_u (i32.add (i32.add (i32.const 8192) (local.get $len)) (i32.const 65535))
                                          (i32.const 65536))
                               (memory.size)))
    (if (i32.gt_s (local.get $pages) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1)) (then unreachable))))
    (i32.const 8192))
  (func (export "get_spec") (result i64) (i64.const {packed_spec}))
  (func (export "execute") (param $request i32) (param $len i32) (result i64)
    (local $i i64)
    {execute}
    (i64.const {packed_answer})))
"""


def tool(name: str, parameters: dict | None = None) -> dict:
    return {"name": name, "description": f"{name} (a test plugin)", "parameters": parameters or {"type": "object"}}


# execute bodies
SPIN = "(loop $forever (br $forever))"
HOG = "(loop $more (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable"
GROW_ONE_PAGE = "(drop (memory.grow (i32.const 1)))"
TRAP = "unreachable"


def count_to(n: int) -> str:
    """Busy work: about a second per few hundred million."""
    return f"""(local.set $i (i64.const 0))
    (loop $count (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br_if $count (i64.lt_u (local.get $i) (i64.const {n}))))"""


def manifest(name: str, version: str, tools: list[str], *, skills: tuple[str, ...] = (), resources: dict | None = None,
             permissions: str = "", description: str = "a test plugin") -> str:
    lines = ["[plugin]", f'name = "{name}"', f'version = "{version}"', f'description = "{description}"',
             'wasm = "plugin.wasm"', ""]
    for kind, names in (("tool", tools), ("skill", skills)):
        for item in names:
            lines += ["[[capabilities]]", f'type = "{kind}"', f'name = "{item}"', ""]
    if permissions:
        lines += ["[permissions]", permissions, ""]
    if resources:
        lines += ["[resources]", *(f"{key} = {value}" for key, value in resources.items()), ""]
    return "\n".join(lines)


def write_plugin(root: Path, name: str, wat: str, tools: list[str], version: str = "1.0.0", **options) -> Path:
    directory = Path(root) / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "plugin.toml").write_text(manifest(name, version, tools, **options))
    (directory / "plugin.wasm").write_bytes(wasmtime.wat2wasm(wat))
    return directory


def write_simple(root: Path, name: str, tool_name: str, execute: str = "", answer: str = '{"output":"done"}',
                 version: str = "1.0.0", **options) -> Path:
    return write_plugin(root, name, module([tool(tool_name)], execute, answer), [tool_name], version, **options)


def copy_example(root: Path) -> Path:
    target = Path(root) / "weather"
    shutil.copytree(EXAMPLE, target, dirs_exist_ok=True)
    return target


def write_skill(directory: Path, name: str, triggers: list[str], body: str, description: str = "a test skill") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    triggers_yaml = "\n".join(f"  - {json.dumps(item)}" for item in triggers)
    (directory / "SKILL.md").write_text(f"---\nname: {name}\ndescription: {description}\ntriggers:\n{triggers_yaml}\n"
                                        f"---\n{body}\n")
    return directory
