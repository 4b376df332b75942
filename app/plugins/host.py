"""Each worker's plugins: every plugin directory loaded into this process, its tools in the tool registry.

A worker loads every plugin under ``[plugins] dir`` when it starts and keeps
one ``Loaded`` version of each: the compiled module, the tools its
``get_spec`` described (only those its manifest declares) and one instance.
Reloading builds the new version completely (read, admit, compile,
instantiate, describe) before swapping it in, so a broken new version leaves
the old one running, and a call already running finishes on the version it
started on. Disabling keeps the plugin loaded but withdraws its tools.
Reloads, disables and enables reach every worker as ``plugin.*`` events; each
worker records its own copy in ``plugin_state`` for the listing.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

from app.agent.tools import Tool, ToolError, ToolRegistry
from app.core import background, events
from app.core.db import connection, utcnow
from app.plugins import manifest as manifests
from app.plugins.manifest import Manifest, ManifestProblem
from app.plugins.models import DISABLED, ERROR, LOADED, PluginSetting, PluginState
from app.plugins.sandbox import Fault, Instance, LoadRefused, compile_program, grant_for, module_bytes_limit

log = logging.getLogger("plugins")

HEARTBEAT_SECS = 10.0
MAX_ERROR_CHARS = 2000
TOPIC_PREFIX = "plugin."


class PluginTrouble(Exception):
    """A plugin version that could not be loaded, and why."""


@dataclass(frozen=True)
class PluginTool:
    name: str
    description: str
    parameters: dict


class Loaded:
    """One version of a plugin. Its instance is made again after a fault (its memory may be half-written)."""

    def __init__(self, manifest: Manifest, program, tools: tuple[PluginTool, ...], instance: Instance):
        self.manifest = manifest
        self.program = program
        self.tools = tools
        self._instance: Instance | None = instance
        self._guard = threading.Lock()

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def memory_bytes(self) -> int:
        instance = self._instance
        return instance.memory_bytes if instance is not None else 0

    def call(self, tool: str, arguments: dict) -> dict:
        instance = self._take_instance()
        try:
            return instance.execute({"tool": tool, "arguments": arguments})
        except Fault:
            with self._guard:
                if self._instance is instance:
                    self._instance = None
            raise

    def _take_instance(self) -> Instance:
        with self._guard:
            if self._instance is None:
                self._instance = Instance.start(self.program)
            return self._instance


def build(manifest: Manifest, settings) -> Loaded:
    """A new version, ready to swap in; raises ``PluginTrouble`` saying why it cannot be."""
    try:
        program = compile_program(manifest, manifest.limits(settings), grant_for(manifest, settings))
        instance = Instance.start(program)
        spec = instance.spec()
    except LoadRefused as exc:
        raise PluginTrouble(str(exc)) from None
    except Fault as fault:
        raise PluginTrouble(f"it was stopped while starting: {fault.reason}") from None
    return Loaded(manifest, program, described_tools(manifest, spec), instance)


def described_tools(manifest: Manifest, spec: dict) -> tuple[PluginTool, ...]:
    """The tools of ``get_spec``'s answer, which must be exactly those the manifest declares."""
    entries = spec.get("tools")
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise PluginTrouble("get_spec must answer {\"tools\": [{name, description, parameters}, ...]}")
    declared = {capability.name: capability for capability in manifest.tools()}
    found: dict[str, PluginTool] = {}
    for entry in entries:
        name = entry.get("name")
        if name not in declared:
            raise PluginTrouble(f"get_spec describes the tool {name!r}, which plugin.toml does not declare")
        parameters = entry.get("parameters", {"type": "object"})
        description = declared[name].description or entry.get("description") or f"{name}, from the plugin"
        tool = PluginTool(name, str(description)[:manifests.MAX_DESCRIPTION_CHARS], parameters)
        try:
            # The registry's own rules (name, object schema, a valid JSON schema), before anything is swapped.
            ToolRegistry().register(Tool(tool.name, tool.description, parameters, _never))
        except Exception as exc:
            raise PluginTrouble(f"get_spec's tool {name!r} cannot be offered: {exc}") from None
        found[name] = tool
    missing = sorted(declared.keys() - found.keys())
    if missing:
        raise PluginTrouble(f"plugin.toml declares tools that get_spec does not describe: {', '.join(missing)}")
    return tuple(found[name] for name in declared)


def _never(arguments, context):
    raise ToolError("not callable")


@dataclass
class Entry:
    """This worker's view of one plugin directory."""

    name: str
    loaded: Loaded | None = None
    error: str | None = None
    disabled: bool = False
    loaded_at: datetime | None = None
    recorded_memory: int = -1
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def status(self) -> str:
        if self.disabled:
            return DISABLED
        return LOADED if self.loaded is not None else ERROR

    @property
    def source(self) -> str:
        return f"plugin:{self.name}"


class PluginHost:
    def __init__(self, state, registry: ToolRegistry, owner: str):
        self.state = state
        self.registry = registry
        self.owner = owner
        self.entries: dict[str, Entry] = {}
        self._entries_guard = threading.Lock()
        self._tasks: list = []

    @property
    def settings(self):
        return self.state.settings

    @property
    def root(self):
        return manifests.plugins_dir(self.settings)

    # ---- loading ----------------------------------------------------------------------

    def load_all(self) -> None:
        disabled = disabled_names()
        for name in manifests.names(self.root):
            entry = self._entry(name)
            entry.disabled = name in disabled
            try:
                self.reload(name)
            except PluginTrouble as exc:
                log.warning("plugin %s not loaded: %s", name, exc)

    def reload(self, name: str) -> Entry:
        """Read the directory again and swap the new version in; raises ``PluginTrouble`` (the old one stays)."""
        entry = self._entry(name)
        with entry.lock:
            try:
                manifest = manifests.read(self.root, name, module_bytes_limit(self.settings))
                loaded = build(manifest, self.settings)
                self._check_names(entry, loaded)
            except (ManifestProblem, PluginTrouble) as exc:
                self._refused(entry, str(exc))
                raise PluginTrouble(str(exc)) from None
            entry.loaded, entry.error, entry.loaded_at = loaded, None, utcnow()
            self._offer(entry)
        log.info("plugin %s %s loaded: %s", name, loaded.version,
                 ", ".join(capability.label for capability in loaded.manifest.capabilities))
        self.record(entry)
        return entry

    def _refused(self, entry: Entry, reason: str) -> None:
        if entry.loaded is not None:
            entry.error = f"version not swapped in, {entry.loaded.version} keeps running: {reason}"
        else:
            entry.error = reason
        log.warning("plugin %s: %s", entry.name, entry.error)
        self.record(entry)

    def _check_names(self, entry: Entry, loaded: Loaded) -> None:
        for tool in loaded.tools:
            taken = self.registry.get(tool.name)
            if taken is not None and taken.source != entry.source:
                raise PluginTrouble(f"its tool {tool.name} has the name of a tool from {taken.source}")

    def _entry(self, name: str) -> Entry:
        with self._entries_guard:
            return self.entries.setdefault(name, Entry(name))

    def set_disabled(self, name: str, disabled: bool) -> Entry:
        entry = self._entry(name)
        with entry.lock:
            entry.disabled = disabled
            self._offer(entry)
        log.info("plugin %s %s", name, "disabled" if disabled else "enabled")
        self.record(entry)
        return entry

    # ---- the registry -----------------------------------------------------------------

    def _offer(self, entry: Entry) -> None:
        """Put the entry's tools in the registry as they should be now: replaced in place, stale ones withdrawn."""
        if entry.disabled or entry.loaded is None:
            self.registry.unregister_source(entry.source)
            return
        offered = [self._tool(entry, tool) for tool in entry.loaded.tools]
        for tool in offered:
            self.registry.register(tool, replace=True)
        names = {tool.name for tool in offered}
        for tool in self.registry.tools():
            if tool.source == entry.source and tool.name not in names:
                self.registry.unregister(tool.name)

    def _tool(self, entry: Entry, tool: PluginTool) -> Tool:
        name, tool_name = entry.name, tool.name

        def call(arguments: dict, context) -> object:
            return self.call(name, tool_name, arguments)

        return Tool(name=tool.name, description=tool.description, parameters=tool.parameters, handler=call,
                    source=entry.source, tags=frozenset({"plugin", entry.source, "wasm"}))

    def call(self, name: str, tool: str, arguments: dict):
        entry = self.entries.get(name)
        if entry is None or entry.loaded is None:
            raise ToolError(f"the plugin {name} is not loaded")
        if entry.disabled:
            raise ToolError(f"the plugin {name} is disabled")
        loaded = entry.loaded
        try:
            answer = loaded.call(tool, arguments)
        except Fault as fault:
            self._faulted(entry, loaded, tool, fault)
            raise ToolError(f"the plugin {name} was stopped: {fault.reason}") from None
        finally:
            self._note_memory(entry)
        if "error" in answer:
            raise ToolError(str(answer["error"])[:MAX_ERROR_CHARS])
        if "output" not in answer:
            raise ToolError(f"the plugin {name} answered with neither output nor error")
        return answer["output"]

    def _faulted(self, entry: Entry, loaded: Loaded, tool: str, fault: Fault) -> None:
        logging.getLogger(f"plugins::{entry.name}").warning("%s stopped (%s): %s", tool, fault.kind, fault.reason)
        if entry.loaded is loaded:
            entry.error = f"{tool} was stopped: {fault.reason}"
            entry.recorded_memory = -1

    def _note_memory(self, entry: Entry) -> None:
        loaded = entry.loaded
        if loaded is not None and loaded.memory_bytes != entry.recorded_memory:
            self.record(entry)

    # ---- skills -----------------------------------------------------------------------

    def skill_dirs(self) -> list[tuple[str, object, tuple[str, ...]]]:
        """(plugin, its skills directory, the skill names it declares) for the plugins offered now."""
        found = []
        for entry in list(self.entries.values()):
            loaded = entry.loaded
            if loaded is not None and not entry.disabled and loaded.manifest.skills():
                found.append((entry.name, loaded.manifest.directory / "skills",
                              tuple(skill.name for skill in loaded.manifest.skills())))
        return found

    # ---- shared state -------------------------------------------------------------------

    def record(self, entry: Entry) -> None:
        loaded = entry.loaded
        memory = loaded.memory_bytes if loaded is not None else 0
        values = {
            "name": entry.name[:64], "owner": self.owner, "status": entry.status,
            "version": loaded.version if loaded else None,
            "error": entry.error[:MAX_ERROR_CHARS] if entry.error else None,
            "description": loaded.manifest.description if loaded else "",
            "capabilities": json.dumps([item.label for item in loaded.manifest.capabilities] if loaded else []),
            "memory_usage_bytes": memory, "loaded_at": entry.loaded_at, "seen_at": utcnow(),
        }
        try:
            with connection():
                (PluginState.insert(id=f"{entry.name[:64]}@{self.owner}", **values)
                 .on_conflict(conflict_target=[PluginState.id],
                              update={getattr(PluginState, key): value for key, value in values.items()})
                 .execute())
            entry.recorded_memory = memory
        except Exception:
            log.warning("plugin %s: could not record its state", entry.name, exc_info=True)

    def heartbeat(self) -> None:
        for entry in list(self.entries.values()):
            self.record(entry)

    def forget(self) -> None:
        with connection():
            PluginState.delete().where(PluginState.owner == self.owner).execute()

    # ---- events from every worker ---------------------------------------------------------

    def on_event(self, topic: str, payload: dict) -> None:
        name = payload.get("name")
        if not isinstance(name, str):
            return
        action = topic.removeprefix(TOPIC_PREFIX)
        if action == "reloaded" and payload.get("worker") != self.owner:
            # Compiling takes a while: not on the loop that delivers every event.
            background.spawn(f"plugin-reload-{name}", lambda task: self._reload_quietly(name))
        elif action in ("disabled", "enabled"):
            self.set_disabled(name, action == "disabled")

    def _reload_quietly(self, name: str) -> None:
        try:
            self.reload(name)
        except PluginTrouble:
            pass  # recorded and logged by reload

    def start(self) -> PluginHost:
        self._tasks.append(background.spawn("plugins-load", lambda task: self.load_all()))
        events.subscribe(TOPIC_PREFIX, self.on_event)
        self._tasks.append(background.spawn_loop("plugins-heartbeat", lambda: HEARTBEAT_SECS, self.heartbeat))
        background.on_stop(self._forget_quietly)
        return self

    def _forget_quietly(self) -> None:
        try:
            self.forget()
        except Exception:
            log.warning("could not clear this worker's plugin rows", exc_info=True)


def disabled_names() -> set[str]:
    with connection():
        return {row.name for row in PluginSetting.select(PluginSetting.name).where(PluginSetting.disabled)}


_current: PluginHost | None = None


def current() -> PluginHost | None:
    """This process's host, once its background work started (served workers)."""
    return _current


def start(state, registry: ToolRegistry | None = None) -> PluginHost:
    """The area's background starter: load every plugin in this worker and follow the ``plugin.*`` events."""
    global _current
    from app.agent.builtin_tools import default_registry
    from app.core.leases import owner_id

    _current = PluginHost(state, registry or default_registry(), owner_id()).start()
    return _current
