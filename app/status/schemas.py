import marshmallow as ma


class MemorySchema(ma.Schema):
    backend = ma.fields.String()
    entries = ma.fields.Integer()


class ProviderSchema(ma.Schema):
    name = ma.fields.String()
    model = ma.fields.String()


class StreamsSchema(ma.Schema):
    open = ma.fields.Integer(metadata={"description": "Event streams open in the whole deployment"})
    dropped_slow = ma.fields.Integer(metadata={"description": "Streams closed because their client stopped reading"})


class RateLimitsSchema(ma.Schema):
    on_storage_error = ma.fields.String(metadata={"description": "allow or deny requests the counters cannot count"})
    storage_errors = ma.fields.Integer(
        metadata={"description": "Requests the answering worker could not count since it started"})
    storage_ok = ma.fields.Boolean(metadata={"description": "False while counting is paused after a storage failure"})


class StatusSchema(ma.Schema):
    status = ma.fields.String()
    version = ma.fields.String()
    uptime_secs = ma.fields.Integer()
    active_sessions = ma.fields.Integer()
    channels = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    plugins = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    mcp = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(), metadata={
        "description": "MCP servers connected in every worker, servers enabled, and open connections"})
    runtime = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(), metadata={
        "description": "Runtime agents, and their executions queued and running in every worker"})
    review = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer(), metadata={
        "description": "Tool reviews being analysed, waiting for a person, and waiting to be signed"})
    memory = ma.fields.Nested(MemorySchema)
    provider = ma.fields.Nested(ProviderSchema)
    rate_limits = ma.fields.Nested(RateLimitsSchema)
    streams = ma.fields.Nested(StreamsSchema)


class HealthSchema(ma.Schema):
    healthy = ma.fields.Boolean()
