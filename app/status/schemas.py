import marshmallow as ma


class MemorySchema(ma.Schema):
    backend = ma.fields.String()
    entries = ma.fields.Integer()


class ProviderSchema(ma.Schema):
    name = ma.fields.String()
    model = ma.fields.String()


class StatusSchema(ma.Schema):
    status = ma.fields.String()
    version = ma.fields.String()
    uptime_secs = ma.fields.Integer()
    active_sessions = ma.fields.Integer()
    channels = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    plugins = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    memory = ma.fields.Nested(MemorySchema)
    provider = ma.fields.Nested(ProviderSchema)


class HealthSchema(ma.Schema):
    healthy = ma.fields.Boolean()
