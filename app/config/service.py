"""Reading and changing the runtime configuration."""

from __future__ import annotations

import logging

from app.core import events, redaction
from app.core.errors import BadRequest
from app.core.settings import Settings, check_patch, is_secret_key, needs_restart, write_changes

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


def _without_secrets(errors: dict, sent: dict) -> dict:
    """The reasons, never repeating the value sent for a secret key."""
    return {
        key: [redaction.scrub(reason, redaction.strings_in(sent.get(key)) if is_secret_key(key) else [])
              for reason in reasons]
        for key, reasons in errors.items()
    }


def patch(settings: Settings, changes: dict) -> dict:
    flat = flatten(changes)
    if not flat:
        raise BadRequest("No configuration keys given")
    to_write, errors = check_patch(flat, settings)
    if errors:
        raise BadRequest("Invalid configuration", details=_without_secrets(errors, flat))
    if to_write:
        write_changes(settings.path, to_write)
        settings.refresh()
    updated = sorted(to_write)
    reload_required = any(needs_restart(key) for key in updated)
    if updated:
        restart = [key for key in updated if needs_restart(key)]
        log.info("configuration updated: %s%s", ", ".join(updated),
                 f" (takes effect after a restart: {', '.join(restart)})" if restart else "")
        events.publish("config.updated", {"updated": updated, "reload_required": reload_required})
    return {"updated": updated, "reload_required": reload_required}
