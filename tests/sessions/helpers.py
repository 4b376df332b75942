"""Shared by the session tests: reading SSE bodies and the events a test caused."""

import json

from app.core.db import connection
from app.core.models import Event


def parse_sse(lines) -> list[tuple[str, dict]]:
    """(event name, JSON data) for each event in a body or an iterable of lines."""
    if isinstance(lines, str):
        lines = lines.split("\n")
    parsed, name, data = [], None, []
    for line in lines:
        if line == "":
            if data:
                parsed.append((name, json.loads("\n".join(data))))
            name, data = None, []
        elif line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            data.append(line[len("data: "):])
    if data:
        parsed.append((name, json.loads("\n".join(data))))
    return parsed


def published(*topics: str) -> list[tuple[str, dict]]:
    """Events on the bus so far, oldest first, optionally only some topics."""
    with connection():
        rows = list(Event.select().order_by(Event.id))
    return [(row.topic, json.loads(row.payload)) for row in rows if not topics or row.topic in topics]
