"""WASM plugins: plugin_setting (the disabled flag, kept across restarts) and plugin_state (each worker's copy)."""

from peewee import BigIntegerField, BooleanField, CharField, DateTimeField, TextField

from migrations import frozen_model


def upgrade(db):
    setting = frozen_model(db, "plugin_setting", {
        "name": CharField(primary_key=True, max_length=64),
        "disabled": BooleanField(default=False),
        "updated_at": DateTimeField(),
    })
    state = frozen_model(db, "plugin_state", {
        "id": CharField(primary_key=True, max_length=400),
        "name": CharField(max_length=64, index=True),
        "owner": CharField(max_length=200),
        "version": CharField(max_length=64, null=True),
        "status": CharField(max_length=16),
        "error": TextField(null=True),
        "description": TextField(default=""),
        "capabilities": TextField(default="[]"),
        "memory_usage_bytes": BigIntegerField(default=0),
        "loaded_at": DateTimeField(null=True),
        "seen_at": DateTimeField(),
    })
    db.create_tables([setting, state])
