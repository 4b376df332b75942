"""Reading and changing the runtime configuration."""

from __future__ import annotations

import logging

from app.core import events
from app.core.errors import BadRequest
from app.core.settings import Settings, check_patch, needs_restart, write_changes

log = logging.getLogger("config")


def flatten(changes: dict, prefix: str = "") -> dict:
    """``{"agent": {"max_turns": 5}}`` and ``{"agent.max_turns": 5}`` mean the same."""
    flat = {}
    for key, value in changes.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def patch(settings: Settings, changes: dict) -> dict:
    flat = flatten(changes)
    if not flat:
        raise BadRequest("No configuration keys given")
    to_write, errors = check_patch(flat, settings)
    if errors:
        raise BadRequest("Invalid configuration", details=errors)
    if to_write:
        write_changes(settings.path, to_write)
        settings.refresh()
        log.info("configuration updated: %s", ", ".join(sorted(to_write)))
    updated = sorted(to_write)
    reload_required = any(needs_restart(key) for key in updated)
    if updated:
        events.publish("config.updated", {"updated": updated, "reload_required": reload_required})
    return {"updated": updated, "reload_required": reload_required}
