"""A plugin directory as the gateway admits it: ``plugin.toml`` read, checked and bounded, before any code runs.

The manifest is what an operator reviews before installing a plugin, so it is
the whole of what the plugin may be: the tools it declares are the only ones
it may offer, its permissions the most it may get, and its resources may only
lower the operator's limits. Files are opened without following symbolic
links, so a plugin cannot point the gateway at a file outside its directory.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

MANIFEST = "plugin.toml"
MAX_MANIFEST_BYTES = 64 * 1024
MAX_DESCRIPTION_CHARS = 2000
MAX_CAPABILITIES = 64
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
WASM_FILE = re.compile(r"^[A-Za-z0-9_.-]{1,128}\.wasm$")
CAPABILITY_TYPES = ("tool", "skill")
PERMISSION_KEYS = ("wasi", "filesystem", "network", "env")
RESOURCE_KEYS = ("max_fuel", "max_memory_mb", "max_execution_time_ms")


class ManifestProblem(Exception):
    """Why a plugin directory is not admitted, in words an operator can act on."""


@dataclass(frozen=True)
class Capability:
    type: str  # "tool" | "skill"
    name: str
    description: str = ""

    @property
    def label(self) -> str:
        return f"{self.type}:{self.name}"


@dataclass(frozen=True)
class Permissions:
    wasi: bool = False
    filesystem: tuple[str, ...] = ()  # directories inside the plugin's own, read-only
    env: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Limits:
    fuel: int
    memory_bytes: int
    time_ms: int


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    description: str
    directory: Path
    wasm: bytes
    capabilities: tuple[Capability, ...]
    permissions: Permissions
    resources: dict  # the plugin's own [resources], before the operator's caps

    def tools(self) -> tuple[Capability, ...]:
        return tuple(item for item in self.capabilities if item.type == "tool")

    def skills(self) -> tuple[Capability, ...]:
        return tuple(item for item in self.capabilities if item.type == "skill")

    def limits(self, settings) -> Limits:
        """The plugin's resources, each at most what the operator allows."""

        def capped(key: str, ceiling: int) -> int:
            own = self.resources.get(key)
            return min(own, ceiling) if own else ceiling

        return Limits(fuel=capped("max_fuel", settings.get("plugins.max_fuel")),
                      memory_bytes=capped("max_memory_mb", settings.get("plugins.max_memory_mb")) * 1024 * 1024,
                      time_ms=capped("max_execution_time_ms", settings.get("plugins.max_execution_time_ms")))


def plugins_dir(settings) -> Path:
    configured = settings.get("plugins.dir")
    return Path(configured) if configured else Path(settings.data_dir) / "plugins"


def names(root: Path) -> list[str]:
    """The plugin directories under ``root`` (entries that are not plain directories are not plugins)."""
    try:
        entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    except FileNotFoundError:
        return []
    return [entry.name for entry in entries
            if entry.is_dir(follow_symlinks=False) and (Path(entry.path) / MANIFEST).exists()]


def read(root: Path, name: str, max_module_bytes: int) -> Manifest:
    """The admitted manifest of ``root/name`` with its module's bytes; raises ``ManifestProblem``."""
    if not NAME.match(name):
        raise ManifestProblem(f"{name!r} is not a plugin name: use a-z, 0-9, _ and -, at most 64, "
                              "starting with a letter or digit")
    directory = root / name
    _plain_directory(directory)
    text = read_bounded(directory / MANIFEST, MAX_MANIFEST_BYTES).decode("utf-8", errors="strict")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestProblem(f"{MANIFEST} is not valid TOML: {exc}") from None
    plugin = _table(document, "plugin", required=True)
    if plugin.get("name") != name:
        raise ManifestProblem(f"[plugin] name must be the directory's name {name!r}, not {plugin.get('name')!r}")
    wasm_file = plugin.get("wasm", "plugin.wasm")
    if not isinstance(wasm_file, str) or not WASM_FILE.match(wasm_file) or wasm_file.startswith("."):
        raise ManifestProblem(f"[plugin] wasm must be a file name in the plugin's directory ending in .wasm, "
                              f"not {wasm_file!r}")
    version = _text(plugin, "version", "[plugin] version", limit=64, required=True)
    description = _text(plugin, "description", "[plugin] description", limit=MAX_DESCRIPTION_CHARS)
    capabilities = _capabilities(document.get("capabilities", []))
    permissions = _permissions(_table(document, "permissions"), directory)
    resources = _resources(_table(document, "resources"))
    # The module last: a manifest's own mistakes are reported before a missing or oversized module.
    return Manifest(name=name, version=version, description=description, directory=directory,
                    wasm=read_bounded(directory / wasm_file, max_module_bytes), capabilities=capabilities,
                    permissions=permissions, resources=resources)


def read_bounded(path: Path, limit: int) -> bytes:
    """A regular file's bytes, refused when it is a symbolic link or larger than ``limit``."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ManifestProblem(f"{path.name} is missing") from None
    except OSError as exc:
        if os.path.islink(path):
            raise ManifestProblem(f"{path.name} is a symbolic link; plugin files must be plain files") from None
        raise ManifestProblem(f"{path.name} cannot be read: {exc.strerror}") from None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ManifestProblem(f"{path.name} is not a regular file")
        if info.st_size > limit:
            raise ManifestProblem(f"{path.name} is {info.st_size} bytes; at most {limit} are admitted")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise ManifestProblem(f"{path.name} is larger than {limit} bytes")
    return data


def _plain_directory(directory: Path) -> None:
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        raise ManifestProblem(f"there is no plugin directory {directory.name!r}") from None
    if stat.S_ISLNK(info.st_mode):
        raise ManifestProblem("the plugin directory is a symbolic link; it must be a plain directory")
    if not stat.S_ISDIR(info.st_mode):
        raise ManifestProblem(f"{directory.name} is not a directory")


def _table(document: dict, key: str, required: bool = False) -> dict:
    value = document.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ManifestProblem(f"{MANIFEST} needs a [{key}] table")
    return value


def _text(table: dict, key: str, where: str, limit: int, required: bool = False) -> str:
    value = table.get(key, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise ManifestProblem(f"{where} must be {'a non-empty' if required else 'a'} string")
    if len(value) > limit:
        raise ManifestProblem(f"{where} is longer than {limit} characters")
    return value


def _capabilities(entries) -> tuple[Capability, ...]:
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ManifestProblem("[[capabilities]] must be an array of tables")
    if not entries:
        raise ManifestProblem("the plugin declares no [[capabilities]]")
    if len(entries) > MAX_CAPABILITIES:
        raise ManifestProblem(f"the plugin declares {len(entries)} capabilities; at most {MAX_CAPABILITIES}")
    found: list[Capability] = []
    for index, entry in enumerate(entries):
        where = f"[[capabilities]] #{index + 1}"
        kind = entry.get("type")
        if kind not in CAPABILITY_TYPES:
            raise ManifestProblem(f"{where}: type must be one of {', '.join(CAPABILITY_TYPES)}, not {kind!r}")
        name = entry.get("name")
        if not isinstance(name, str) or not TOOL_NAME.match(name):
            raise ManifestProblem(f"{where}: name must be letters, digits, _ and -, at most 64, not {name!r}")
        capability = Capability(kind, name, _text(entry, "description", f"{where} description",
                                                  limit=MAX_DESCRIPTION_CHARS))
        if any(item.label == capability.label for item in found):
            raise ManifestProblem(f"{where}: {capability.label} is declared twice")
        found.append(capability)
    return tuple(found)


def _permissions(table: dict, directory: Path) -> Permissions:
    unknown = sorted(set(table) - set(PERMISSION_KEYS))
    if unknown:
        raise ManifestProblem(f"[permissions] has unknown keys: {', '.join(unknown)} "
                              f"(known: {', '.join(PERMISSION_KEYS)})")
    if table.get("network", False) is not False:
        raise ManifestProblem("[permissions] network cannot be granted: plugins have no network access here")
    wasi = table.get("wasi", False)
    if not isinstance(wasi, bool):
        raise ManifestProblem("[permissions] wasi must be true or false")
    env = table.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(value, str) for value in env.values()):
        raise ManifestProblem("[permissions] env must be a table of strings")
    paths = table.get("filesystem", [])
    if not isinstance(paths, list) or not all(isinstance(path, str) for path in paths):
        raise ManifestProblem("[permissions] filesystem must be a list of directories inside the plugin's own")
    if (paths or env) and not wasi:
        raise ManifestProblem("[permissions] filesystem and env need wasi = true")
    for path in paths:
        _inside(directory, path)
    return Permissions(wasi=wasi, filesystem=tuple(paths), env=dict(env))


def _inside(directory: Path, relative: str) -> None:
    candidate = Path(relative)
    if candidate.is_absolute() or ".." in candidate.parts or not candidate.parts:
        raise ManifestProblem(f"[permissions] filesystem entry {relative!r} must be a relative path inside "
                              "the plugin's directory")
    current = directory
    for part in candidate.parts:
        current = current / part
        if os.path.islink(current):
            raise ManifestProblem(f"[permissions] filesystem entry {relative!r} goes through a symbolic link")
    if not current.is_dir():
        raise ManifestProblem(f"[permissions] filesystem entry {relative!r} is not a directory")


def _resources(table: dict) -> dict:
    unknown = sorted(set(table) - set(RESOURCE_KEYS))
    if unknown:
        raise ManifestProblem(f"[resources] has unknown keys: {', '.join(unknown)} (known: {', '.join(RESOURCE_KEYS)})")
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ManifestProblem(f"[resources] {key} must be a positive integer")
    return dict(table)
