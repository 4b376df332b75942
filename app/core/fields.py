"""The shape of one configuration key, shared by the per-area settings modules.

Import-light on purpose (no Flask, no peewee, nothing of the application):
gunicorn's master assembles the settings schema from these declarations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Field:
    kind: str  # str | int | float | bool | list | limit | durations | tables
    default: Any
    hot: bool = True  # takes effect without a restart
    choices: tuple = ()
    minimum: float | None = None
    maximum: float | None = None
    # Shown as the redaction marker by the API, the CLI and error bodies; a URL value keeps all but its password.
    secret: bool = False
    help: str = ""  # one line for docs/configuration.md
    # For a ``tables`` key (free-form tables, one per name, inside a declared section: ``[mcp.servers.NAME]``):
    # keys of each table whose whole value is secret whatever its name (``headers``).
    secret_keys: tuple = ()
    # For a ``tables`` key: keys of each table only the file may set, never PATCH (``command``: what runs).
    file_only_keys: tuple = ()


# A section whose keys are free-form tables (one per channel, server, plugin...).
OPEN = object()
