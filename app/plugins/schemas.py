"""What the plugins API shows: each plugin merged over the workers, and the answers of its actions."""

import marshmallow as ma

from app.core.schema import UtcDateTime


class WorkerPluginSchema(ma.Schema):
    owner = ma.fields.String(metadata={"description": "The worker (host:pid:id) holding this copy"})
    status = ma.fields.String(metadata={"description": "loaded, disabled or error"})
    version = ma.fields.String(allow_none=True)
    error = ma.fields.String(allow_none=True)
    memory_usage_bytes = ma.fields.Integer()
    loaded_at = UtcDateTime(allow_none=True)


class PluginSchema(ma.Schema):
    name = ma.fields.String(required=True)
    version = ma.fields.String(allow_none=True, metadata={"description": "The version running (newest loaded)"})
    description = ma.fields.String()
    status = ma.fields.String(metadata={"description": "loaded, disabled, or error (see error)"})
    error = ma.fields.String(allow_none=True, metadata={
        "description": "Why it is not loaded, or why its last reload or call failed"})
    capabilities = ma.fields.List(ma.fields.String(), metadata={"description": "tool:<name> and skill:<name>"})
    memory_usage_bytes = ma.fields.Integer(metadata={
        "description": "The linear memory of its instance (the largest over the workers), measured"})
    workers = ma.fields.List(ma.fields.Nested(WorkerPluginSchema))


class PluginsSchema(ma.Schema):
    plugins = ma.fields.List(ma.fields.Nested(PluginSchema))


class ActionSchema(ma.Schema):
    name = ma.fields.String()
    status = ma.fields.String(metadata={"description": "loaded, disabled or error"})
    version = ma.fields.String(metadata={"description": "The version now running (reload only)"})
