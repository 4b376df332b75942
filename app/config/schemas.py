import marshmallow as ma

from app.core.fields import OPEN
from app.core.schema import duration_pattern
from app.core.settings import SCHEMA

# Rate limits as the settings read them (count/period, at most a day); spaces and leading zeros are tolerated too.
_LIMIT_PERIOD = ("(?:(?:[1-9][0-9]{0,3}|[1-7][0-9]{4}|8[0-5][0-9]{3})?(?:s|sec|second)s?"
                 "|(?:[1-9][0-9]{0,2}|1[0-3][0-9]{2}|14[0-3][0-9])?(?:m|min|minute)s?|(?:[1-9]|1[0-9]|2[0-4])?(?:h|hour)s?)")
LIMIT_PATTERN = f"^[1-9][0-9]{{0,11}}/{_LIMIT_PERIOD}$"
DURATION_PATTERN = f"^{duration_pattern(positive=True)}$"


KINDS = {
    "str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
    "bool": {"type": "boolean"}, "list": {"type": "array", "items": {"type": "string"}},
    "limit": {"type": "string", "pattern": LIMIT_PATTERN},
    "durations": {"type": "array", "items": {"type": "string", "pattern": DURATION_PATTERN}},
    "tables": {"type": "object", "additionalProperties": {"type": "object"}},
}
# Set in a PATCH by their own dotted keys (``mcp.servers.<name>.<key>``), each checked by its area, like
# the keys of free-form sections (``channels_config.<name>.<key>``).
BY_INNER_KEYS = ("tables",)


def _value_schema(field) -> dict:
    """The JSON schema of one key's value, from its declaration in the settings schema."""
    schema = dict(KINDS.get(field.kind, {}))
    if field.choices:
        schema["enum"] = list(field.choices)
    if field.minimum is not None:
        schema["minimum"] = field.minimum
    if field.maximum is not None:
        schema["maximum"] = field.maximum
    if field.help:
        schema["description"] = field.help + ("" if field.hot else " (takes effect after a restart)")
    return schema


def _open_table(description: str) -> dict:
    # [section.<name>] tables of scalars and lists, free-form.
    return {"type": "object", "description": description, "additionalProperties": {
        "type": "object", "minProperties": 1, "additionalProperties": {"nullable": False}}}


def _patch_document() -> dict:
    properties = {}
    for section, fields in SCHEMA.items():
        if fields is OPEN:
            continue  # OpenAPI 3.0 cannot constrain their key names: described in words below
        for key, field in fields.items():
            if field.kind not in BY_INNER_KEYS:
                properties[f"{section}.{key}"] = _value_schema(field)
    return {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": False,
        "properties": properties,
        "description": "Dotted keys to new values (`{\"agent.max_turns\": 100}`), checked per key like the "
                       "file; a secret sent back as GET showed it is kept. Also accepted, beyond what this schema "
                       "lists: the same keys as nested tables (`{\"agent\": {\"max_turns\": 100}}`), and the keys "
                       "of free-form tables, `channels_config.<name>.<key>` or `mcp.servers.<name>.<key>` "
                       "(a non-empty name without dots; a string, number, boolean or a list of those).",
    }


def _config_document() -> dict:
    properties = {}
    for section, fields in SCHEMA.items():
        if fields is OPEN:
            properties[section] = _open_table(f"[{section}.<name>] tables; secret-looking keys redacted")
            continue
        properties[section] = {"type": "object", "properties": {
            key: _value_schema(field) for key, field in fields.items()}}
    return {"type": "object", "properties": properties,
            "description": "Every section with its current values; secrets show as `***REDACTED***` "
                           "(a URL keeps all but its password)"}


class ConfigPatchSchema(ma.Schema):
    """Dotted keys (``"agent.max_turns": 100``) or nested tables; values are validated per key."""

    class Meta:
        unknown = ma.INCLUDE
        openapi = _patch_document()


class ConfigSchema(ma.Schema):
    """Documents the configuration; the value is already in its API form (``Settings.redacted``)."""

    class Meta:
        openapi = _config_document()

    @ma.post_dump(pass_original=True)
    def as_given(self, data, original, **kwargs):
        return original


class ConfigPatchResultSchema(ma.Schema):
    updated = ma.fields.List(ma.fields.String())
    reload_required = ma.fields.Boolean()
