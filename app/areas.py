"""The areas of the service: the one list the factory and the settings schema loop over.

Adding an area means adding its name here and giving its package an ``area.py``
(its declaration, see ``app.core.areas``) and, when it has configuration keys,
a ``settings.py`` with ``SECTIONS``. Kept import-light: gunicorn's master reads
it to assemble the settings schema.
"""

AREAS = (
    "status", "config", "logs", "agent", "sessions", "hooks",
    "channels", "mcp", "runtime", "plugins", "skills", "review",
)
