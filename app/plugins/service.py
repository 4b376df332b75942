"""Plugins as the API and the status page see them, and the operator's actions on them.

Listing merges every live worker's ``plugin_state`` row: a plugin is
``disabled`` when the operator disabled it, ``error`` when a worker could not
load it (the reason is given), ``loaded`` otherwise; its memory is the
largest of its instances' linear memories. Reloading happens first in the
worker serving the request, which can then say how it went, and reaches the
other workers as the ``plugin.reloaded`` event; disabling and enabling are a
persisted flag and an event every worker applies.
"""

from __future__ import annotations

import json
from datetime import timedelta

from app.core import events
from app.core.db import connection, transaction, utcnow
from app.core.errors import ApiError, NotFound, ServiceUnavailable
from app.plugins import host as hosts
from app.plugins import manifest as manifests
from app.plugins.models import DISABLED, ERROR, LOADED, PluginSetting, PluginState

# A row not refreshed for this long belongs to a worker that is gone.
STALE_SECS = 3 * hosts.HEARTBEAT_SECS


class PluginRefused(ApiError):
    """422 ``plugin_refused``: the plugin directory's new content cannot be loaded (the old version stays)."""

    status, code, default_message = 422, "plugin_refused", "The plugin cannot be loaded"


def _host(settings, name: str) -> hosts.PluginHost:
    """This worker's plugin host, once ``name`` is known to be a plugin (404 first, whatever the process)."""
    host = hosts.current()
    if host is None:
        known = manifests.names(manifests.plugins_dir(settings))
        if name not in known:
            raise NotFound(f"No plugin named {name!r}", details={"plugins": known})
        raise ServiceUnavailable("Plugins are not running in this process (it serves no requests)")
    _known(host, name)
    return host


# ---- listing ------------------------------------------------------------------------


def list_plugins() -> list[dict]:
    """Every plugin some live worker knows, merged over the workers (call with a connection)."""
    disabled = {row.name for row in PluginSetting.select().where(PluginSetting.disabled)}
    return [_merged(name, rows, name in disabled) for name, rows in sorted(_live_rows().items())]


def _live_rows() -> dict[str, list[PluginState]]:
    fresh = utcnow() - timedelta(seconds=STALE_SECS)
    grouped: dict[str, list[PluginState]] = {}
    for row in PluginState.select().where(PluginState.seen_at >= fresh).order_by(PluginState.owner):
        grouped.setdefault(row.name, []).append(row)
    return grouped


def _merged(name: str, rows: list[PluginState], disabled: bool) -> dict:
    running = [row for row in rows if row.version is not None]
    newest = max(running, key=lambda row: row.loaded_at or row.seen_at) if running else None
    failed = [row for row in rows if row.status == ERROR]
    status = DISABLED if disabled else ERROR if failed or newest is None else LOADED
    errors = [row.error for row in rows if row.error]
    return {
        "name": name,
        "version": newest.version if newest else None,
        "description": newest.description if newest else "",
        "status": status,
        "error": errors[0] if errors else None,
        "capabilities": json.loads(newest.capabilities) if newest else [],
        "memory_usage_bytes": max((row.memory_usage_bytes for row in rows), default=0),
        "workers": [_worker(row) for row in rows],
    }


def _worker(row: PluginState) -> dict:
    return {"owner": row.owner, "status": row.status, "version": row.version, "error": row.error,
            "memory_usage_bytes": row.memory_usage_bytes, "loaded_at": row.loaded_at}


def status_counts(settings) -> dict:
    """For GET /api/v1/status: plugins loaded (in every worker, not disabled) out of those known."""
    with connection():
        plugins = list_plugins()
    return {"plugins": {"loaded": sum(1 for plugin in plugins if plugin["status"] == LOADED),
                        "total": len(plugins)}}


# ---- actions ----------------------------------------------------------------------


def _known(host: hosts.PluginHost, name: str) -> None:
    if name in host.entries or name in manifests.names(host.root):
        return
    raise NotFound(f"No plugin named {name!r}", details={"plugins": sorted(set(host.entries)
                                                                          | set(manifests.names(host.root)))})


def reload(settings, name: str) -> dict:
    """Load the directory's current content here, then in every other worker."""
    host = _host(settings, name)
    try:
        entry = host.reload(name)
    except hosts.PluginTrouble as exc:
        running = host.entries[name].loaded
        raise PluginRefused(f"Plugin {name}: {exc}", details={
            "reason": str(exc), "running_version": running.version if running else None}) from None
    answer = {"name": name, "status": entry.status, "version": entry.loaded.version}
    with transaction():
        events.publish(f"{hosts.TOPIC_PREFIX}reloaded", {**answer, "worker": host.owner})
    return answer


def set_disabled(settings, name: str, disabled: bool) -> dict:
    """Persist the flag, and withdraw (or offer again) the plugin's tools in every worker."""
    host = _host(settings, name)
    now = utcnow()
    with transaction():
        (PluginSetting.insert(name=name, disabled=disabled, updated_at=now)
         .on_conflict(conflict_target=[PluginSetting.name],
                      update={PluginSetting.disabled: disabled, PluginSetting.updated_at: now})
         .execute())
        events.publish(f"{hosts.TOPIC_PREFIX}{'disabled' if disabled else 'enabled'}", {"name": name})
    entry = host.set_disabled(name, disabled)
    return {"name": name, "status": entry.status}
