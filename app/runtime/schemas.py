"""The runtime API's bodies: the Symbiont reference's shapes, and the SDK's fields beside them."""

import json

import marshmallow as ma

from app.core.schema import JsonList, JsonObject, JsonValue, UtcDateTime
from app.runtime.models import STATUSES

MAX_ID = 200
MAX_PAGE = 200
MAX_OFFSET = 10_000_000
MAX_INPUT_CHARS = 100_000
MAX_PARAMETERS_BYTES = 65_536
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$"
AGENT_STATES = ("idle", "active", "busy", "error", "stopped")


def _parameters_size(value: dict) -> None:
    if len(json.dumps(value, separators=(",", ":")).encode()) > MAX_PARAMETERS_BYTES:
        raise ma.ValidationError(f"must be at most {MAX_PARAMETERS_BYTES} bytes as JSON")


def _parameters(**kwargs):
    return ma.fields.Dict(keys=ma.fields.String(validate=ma.validate.Length(max=200)), values=JsonValue(),
                          load_default=dict, validate=_parameters_size, **kwargs)


def _text(maximum: int, **kwargs):
    return ma.fields.String(validate=ma.validate.Length(max=maximum), **kwargs)


# A program in the Symbiont DSL: no JSON schema can say which strings parse (the OpenAPI
# format names the grammar, app/runtime/dsl/README.md).
DSL_FORMAT = "symbiont-dsl"


class AgentCreateSchema(ma.Schema):
    """The reference's ``{name, dsl}``, or the SDK's agent body (no ``dsl``), which becomes an equivalent DSL."""

    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=MAX_ID))
    dsl = ma.fields.String(load_default=None, metadata={"description": "The agent in the Symbiont DSL",
                                                        "format": DSL_FORMAT})
    id = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Regexp(ID_PATTERN),
                          metadata={"description": "Kept when given (the SDK chooses one); a UUID otherwise"})
    description = _text(2000, load_default="", allow_none=True)
    system_prompt = _text(MAX_INPUT_CHARS, load_default="", allow_none=True)
    tools = ma.fields.List(ma.fields.String(validate=ma.validate.Length(min=1, max=200)), load_default=list,
                           allow_none=True, validate=ma.validate.Length(max=200),
                           metadata={"description": "Tool names or capability tags the agent may use"})
    model = _text(200, load_default=None, allow_none=True)
    temperature = ma.fields.Float(load_default=None, allow_none=True, validate=ma.validate.Range(min=0, max=2))
    top_p = ma.fields.Float(load_default=None, allow_none=True, validate=ma.validate.Range(min=0, max=1))
    max_tokens = ma.fields.Integer(load_default=None, allow_none=True,
                                   validate=ma.validate.Range(min=1, max=1_000_000))


class AgentUpdateSchema(ma.Schema):
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=MAX_ID))
    dsl = ma.fields.String(metadata={"description": "The agent in the Symbiont DSL", "format": DSL_FORMAT})

    class Meta:
        openapi = {"minProperties": 1}

    @ma.validates_schema
    def _at_least_one(self, data, **kwargs):
        if not data:
            raise ma.ValidationError("give at least one of name and dsl", field_name="body")


class ExecuteSchema(ma.Schema):
    input = ma.fields.String(load_default="", validate=ma.validate.Length(max=MAX_INPUT_CHARS),
                             metadata={"description": "The message the agent is given"})
    parameters = _parameters(metadata={"description": "Given to the agent as JSON after the input"})


class WorkflowSchema(ma.Schema):
    workflow_id = ma.fields.String(required=True, validate=ma.validate.Length(min=1),
                                   metadata={"description": "A stored agent's id or name, or DSL source"})
    parameters = _parameters(metadata={"description": "A string `input` is the agent's message; "
                                                      "all of them are given to it as JSON"})
    agent_id = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(min=1, max=MAX_ID),
                                metadata={"description": "Which agent of DSL source runs (by name; default its "
                                                         "first); with a stored agent, that agent's id or name"})


class HistoryQuerySchema(ma.Schema):
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=MAX_PAGE))
    offset = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=MAX_OFFSET))


# ---- answers ----------------------------------------------------------------------


class RuntimeHealthSchema(ma.Schema):
    status = ma.fields.String(metadata={"enum": ["healthy", "unhealthy"]})
    uptime_seconds = ma.fields.Integer()
    timestamp = ma.fields.String(metadata={"format": "date-time"})
    version = ma.fields.String()
    error = ma.fields.String(metadata={"description": "Only when unhealthy"})


class SystemMetricsSchema(ma.Schema):
    uptime_seconds = ma.fields.Integer()
    memory_usage = ma.fields.String(metadata={"example": "75.0%"})
    cpu_usage = ma.fields.String(metadata={"example": "45.0%"})


class AgentCountsSchema(ma.Schema):
    total = ma.fields.Integer()
    active = ma.fields.Integer(metadata={"description": "Agents with an execution queued or running"})
    idle = ma.fields.Integer()


class MetricsSchema(ma.Schema):
    system = ma.fields.Nested(SystemMetricsSchema)
    agents = ma.fields.Nested(AgentCountsSchema)
    uptime_seconds = ma.fields.Integer()
    memory_usage_bytes = ma.fields.Integer(metadata={"description": "Memory in use on the host"})
    memory_usage_percent = ma.fields.Float()
    cpu_usage_percent = ma.fields.Float(metadata={"description": "Host CPU use since the previous sample"})
    disk_usage_bytes = ma.fields.Integer(metadata={"description": "Used on the data directory's file system"})
    disk_usage_percent = ma.fields.Float()
    active_agents = ma.fields.Integer()
    total_agents = ma.fields.Integer()
    secrets_count = ma.fields.Integer(metadata={"description": "Secret values in the configuration"})
    mcp_connections = ma.fields.Integer(metadata={"description": "Open connections to MCP servers"})
    vector_db_items = ma.fields.Integer(metadata={"description": "Entries in memory"})


class CreatedSchema(ma.Schema):
    id = ma.fields.String()
    status = ma.fields.String(metadata={"enum": ["created", "updated", "deleted"]})


class AgentSchema(ma.Schema):
    id = ma.fields.String()
    name = ma.fields.String()
    description = ma.fields.String()
    dsl = ma.fields.String()
    agent_name = ma.fields.String(metadata={"description": "The agent of the program that runs"})
    definition = JsonObject(attribute="program", metadata={"description": "The parsed program"})
    options = JsonObject(metadata={"description": "Provider options of an agent created from the SDK's body"})
    created_at = UtcDateTime()
    updated_at = UtcDateTime()
    last_activity = UtcDateTime(attribute="last_activity_at")


class ResourceUsageSchema(ma.Schema):
    memory_bytes = ma.fields.Integer()
    cpu_percent = ma.fields.Float()
    active_tasks = ma.fields.Integer()


class AgentStatusSchema(ma.Schema):
    agent_id = ma.fields.String()
    state = ma.fields.String(metadata={"enum": list(AGENT_STATES)})
    last_activity = UtcDateTime()
    resource_usage = ma.fields.Nested(ResourceUsageSchema)


class ExecutionStartedSchema(ma.Schema):
    execution_id = ma.fields.String(attribute="id")
    status = ma.fields.Constant("execution_started")


class ExecutionSchema(ma.Schema):
    execution_id = ma.fields.String(attribute="id")
    status = ma.fields.String(metadata={"enum": list(STATUSES)})
    timestamp = UtcDateTime(attribute="created_at")
    origin = ma.fields.String(metadata={"enum": ["execute", "workflow"]})
    input = ma.fields.String()
    parameters = JsonObject()
    result = ma.fields.String(allow_none=True)
    error = ma.fields.String(allow_none=True)
    error_code = ma.fields.String(allow_none=True)
    tool_calls = JsonList(ma.fields.Dict())
    attempts = ma.fields.Integer()
    started_at = UtcDateTime(allow_none=True)
    finished_at = UtcDateTime(allow_none=True)
    cpu_ms = ma.fields.Float(allow_none=True)
    memory_bytes = ma.fields.Integer(allow_none=True)


class HistorySchema(ma.Schema):
    history = ma.fields.List(ma.fields.Nested(ExecutionSchema))
    total = ma.fields.Integer()


class ExecutionEventSchema(ma.Schema):
    """The payload of the agent.execution.* events."""

    execution_id = ma.fields.String(attribute="id")
    agent_id = ma.fields.String(allow_none=True)
    status = ma.fields.String()
    origin = ma.fields.String()
    attempt = ma.fields.Integer(attribute="attempts")
    timestamp = UtcDateTime(attribute="created_at")
    result = ma.fields.String(allow_none=True)
    error = ma.fields.String(allow_none=True)
    error_code = ma.fields.String(allow_none=True)


class WorkflowResultSchema(ma.Schema):
    result = ma.fields.String()
    execution_id = ma.fields.String()
    status = ma.fields.String()
