import marshmallow as ma


class ConfigPatchSchema(ma.Schema):
    """Dotted keys (``"agent.max_turns": 100``) or nested tables; values are validated per key."""

    class Meta:
        unknown = ma.INCLUDE


class ConfigPatchResultSchema(ma.Schema):
    updated = ma.fields.List(ma.fields.String())
    reload_required = ma.fields.Boolean()
