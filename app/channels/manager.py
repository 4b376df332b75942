"""Each worker's side of the channels: their units, and following configuration changes.

Every worker declares one singleton unit per configured channel (the
supervisor runs each in one worker only) and answers channel messages in its
job pool (the area declares their job kind). When a ``[channels_config.*]`` table changes (``PATCH
/api/v1/config`` or an edit of the file), the worker holding that channel
restarts its unit, which reconnects with the new configuration; a new table
gets a unit in every worker.
"""

from __future__ import annotations

import copy
import logging
import threading

from app.channels import config as channel_config
from app.channels import connection, service
from app.core import events, supervisor

log = logging.getLogger("channel")


class Manager:
    def __init__(self, state):
        self.state = state
        self._guard = threading.Lock()
        self._seen: dict[str, dict] = {}

    def start(self) -> None:
        self.reconcile(self.state.settings)
        self.state.settings_listeners.append(self.reconcile)
        # The worker that wrote a PATCH reloaded its settings without its listeners: the event tells it.
        events.subscribe("config.updated", lambda topic, payload: self.reconcile(self.state.settings))

    def reconcile(self, settings) -> None:
        tables = {name: copy.deepcopy(table) for name, table in channel_config.configured(settings).items()}
        with self._guard:
            added = [name for name in tables if name not in self._seen]
            changed = [name for name in tables if name in self._seen and self._seen[name] != tables[name]]
            removed = [name for name in self._seen if name not in tables]
            self._seen = tables
        for name in added:
            connection.declare(self.state, name)
        for name in changed + removed:
            # Only the worker running the unit acts; its next run reads the table as it is now.
            if supervisor.restart_unit(service.unit_name(name)):
                log.info("channel %s: configuration changed; reconnecting", name)


def start(state) -> Manager:
    manager = Manager(state)
    manager.start()
    return manager
