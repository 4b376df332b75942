"""Shared by the session tests: the events a test caused."""

import json

from app.core.db import connection
from app.core.models import Event


def published(*topics: str) -> list[tuple[str, dict]]:
    """Events on the bus so far, oldest first, optionally only some topics."""
    with connection():
        rows = list(Event.select().order_by(Event.id))
    return [(row.topic, json.loads(row.payload)) for row in rows if not topics or row.topic in topics]
