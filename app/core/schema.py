"""Marshmallow fields that dump database rows as the API shows them, and the input fields every schema shares.

Schemas dump rows directly (routes, event payloads and SSE frames share one
schema per shape), so a field is added in one place. A value that is already
in its API form (a view dumped earlier, e.g. a reply that was also streamed)
passes through unchanged.

Input fields accept exactly what the OpenAPI document says: a boolean is
``true`` or ``false``, not ``0`` or ``"yes"``, and a PATCH body names at least
one field.
"""

from __future__ import annotations

import json
from datetime import datetime

import marshmallow as ma

from app.core.db import iso
from app.core.jsonbody import MAX_DEPTH, MAX_INT


class UtcDateTime(ma.fields.DateTime):
    """A naive UTC datetime as ISO 8601 with milliseconds and ``Z`` (OpenAPI: date-time)."""

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, datetime):
            return iso(value)
        return value


class JsonObject(ma.fields.Dict):
    """A JSON object stored as text."""

    def _serialize(self, value, attr, obj, **kwargs):
        return super()._serialize(json.loads(value) if isinstance(value, str) else value, attr, obj, **kwargs)


class JsonList(ma.fields.List):
    """A JSON list stored as text."""

    def _serialize(self, value, attr, obj, **kwargs):
        return super()._serialize(json.loads(value) if isinstance(value, str) else value, attr, obj, **kwargs)


class Inline(ma.fields.Nested):
    """A nested object made of the row's own columns (e.g. ``input_tokens`` → ``usage.input``).

    ``when(row)`` False dumps null; a dict already in API form passes through.
    """

    def __init__(self, nested, when=None, **kwargs):
        super().__init__(nested, **kwargs)
        self.when = when

    def get_value(self, obj, attr, accessor=None, default=ma.missing):
        if isinstance(obj, dict):
            return obj.get(attr, default)
        if self.when is not None and not self.when(obj):
            return None
        return obj

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, dict):
            return value
        return super()._serialize(value, attr, obj, **kwargs)


def duration_pattern(positive: bool = False) -> str:
    """A regex (unanchored) of the durations ``app.core.timeparse`` reads, bounded to a few decades.

    Units are case-insensitive there, so here too; ``positive`` leaves zero out.
    """
    fraction = "(?:[.][0-9]{1,3})?"

    def number(digits: int) -> str:
        whole = f"[1-9][0-9]{{0,{digits - 1}}}{fraction}"
        return f"(?:{whole}|0[.](?:[1-9][0-9]{{0,2}}|0[1-9][0-9]?|00[1-9]))" if positive else \
            f"[0-9]{{1,{digits}}}{fraction}"

    return (f"(?:{number(7)}(?:[mM][sS]|[sS]|[mM])|{number(5)}[hH]|{number(4)}[dD]|{number(3)}[wW])")


class Boolean(ma.fields.Boolean):
    """A JSON ``true`` or ``false``; marshmallow would also take 0, 1, "yes", "on" and the like."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value is True or value is False:
            return value
        raise self.make_error("invalid", input=value)


class QueryBoolean(ma.fields.Boolean):
    """A boolean in a query string, which carries text: the words ``true`` and ``false`` only."""

    WORDS = {"true": True, "false": False}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and value in self.WORDS:
            return self.WORDS[value]
        raise self.make_error("invalid", input=value)


class PatchSchema(ma.Schema):
    """A PATCH body: the fields to change, at least one."""

    class Meta:
        openapi = {"minProperties": 1}

    @ma.validates_schema(pass_original=True)
    def not_empty(self, data, original_data, **kwargs):
        if isinstance(original_data, dict) and not original_data:
            raise ma.ValidationError("name at least one field to change", "_schema")


JSON_VALUE = "#/components/schemas/JsonValue"
JSON_VALUE_DOC = {
    "description": f"Any JSON value: numbers within ±{MAX_INT} (what every JSON client reads exactly), "
                   f"strings without U+0000, at most {MAX_DEPTH} arrays and objects deep",
    "nullable": True,
    "anyOf": [
        {"type": "string"},
        {"type": "number", "minimum": -MAX_INT, "maximum": MAX_INT},
        {"type": "boolean"},
        {"type": "array", "items": {"$ref": JSON_VALUE}},
        {"type": "object", "additionalProperties": {"$ref": JSON_VALUE}},
    ],
}


class JsonValue(ma.fields.Raw):
    """Free-form JSON (metadata values): its numbers bounded like integers, as the document says."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_none", True)
        super().__init__(**kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, (int, float)) and not isinstance(item, bool) and abs(item) > MAX_INT:
                raise ma.ValidationError(f"numbers must be within ±{MAX_INT}, not {item!r}")
        return value
