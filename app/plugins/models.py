"""What every worker knows of the plugins: the operator's disabled flags, and each worker's loaded copy.

Each worker loads its own instance of every plugin, so a plugin has one
``plugin_state`` row per worker (``<plugin>@<worker>``), refreshed while the
worker lives (``seen_at``): the listing ignores rows whose worker stopped
refreshing them. ``plugin_setting`` holds what survives restarts (disabled).
"""

from peewee import BigIntegerField, BooleanField, CharField, DateTimeField, TextField

from app.core.db import BaseModel

LOADED, DISABLED, ERROR = "loaded", "disabled", "error"


class PluginSetting(BaseModel):
    name = CharField(primary_key=True, max_length=64)
    disabled = BooleanField(default=False)
    updated_at = DateTimeField()

    class Meta:
        table_name = "plugin_setting"


class PluginState(BaseModel):
    id = CharField(primary_key=True, max_length=400)
    name = CharField(max_length=64, index=True)
    owner = CharField(max_length=200)
    version = CharField(max_length=64, null=True)
    status = CharField(max_length=16)
    error = TextField(null=True)
    description = TextField(default="")
    capabilities = TextField(default="[]")  # JSON list of "tool:<name>", "skill:<name>"
    memory_usage_bytes = BigIntegerField(default=0)
    loaded_at = DateTimeField(null=True)
    seen_at = DateTimeField()

    class Meta:
        table_name = "plugin_state"
