from flask import current_app, g, jsonify, request

from app.core.api import SAFE_METHODS, Blueprint
from app.core.auth import unauthorized
from app.core.errors import Forbidden
from app.runtime import metrics, service
from app.runtime.schemas import (
    AgentCreateSchema,
    AgentSchema,
    AgentStatusSchema,
    AgentUpdateSchema,
    CreatedSchema,
    ExecuteSchema,
    ExecutionSchema,
    ExecutionStartedSchema,
    HistoryQuerySchema,
    HistorySchema,
    MetricsSchema,
    RuntimeHealthSchema,
    WorkflowResultSchema,
    WorkflowSchema,
)

# Full paths rather than a prefix: /api/v1 alone would also claim every unknown path's rate-limit group.
blp = Blueprint("runtime", __name__, description="Symbiont runtime: health, metrics and workflow execution "
                "(public unless [runtime] require_auth_everywhere)", rate_limits=("runtime_read", "runtime_run"))
agents_blp = Blueprint("agents", __name__, url_prefix="/api/v1/agents",
                       description="Symbiont runtime agents, defined in the Symbiont DSL, and their executions",
                       rate_limits=("runtime_read", "runtime_write"))

AGENT_IDS_DOC = {"responses": {200: {"description": "The id of every agent",
                                     "content": {"application/json": {"schema": {
                                         "type": "array", "items": {"type": "string"}}}}}}}
IDEMPOTENCY_DOC = {"parameters": [{"in": "header", "name": "Idempotency-Key", "required": False,
                                   "schema": {"type": "string", "pattern": service.KEY_PATTERN.pattern},
                                   "description": "The same key for the same agent returns the same execution"}]}


def _state():
    return current_app.extensions["lockgate"]


def _settings():
    return _state().settings


@blp.before_request
def closed_when_configured():
    """``[runtime] require_auth_everywhere``: these public routes then need read (GET) or write."""
    if not _settings().get("runtime.require_auth_everywhere"):
        return
    scope = "read" if request.method in SAFE_METHODS else "write"
    principal = g.get("principal")
    if principal is None:
        raise unauthorized(request.headers.get("Authorization"))
    refusal = principal.refusal(scope, request.blueprint)
    if refusal is not None:
        raise Forbidden(refusal, details={"required_scope": scope})


@blp.route("/api/v1/health", methods=["GET"])
@blp.public
@blp.rate_limit("probes")
@blp.response(200, RuntimeHealthSchema)
@blp.alt_response(500, schema=RuntimeHealthSchema, description="Unhealthy: the database check failed")
def health():
    """Health of the runtime: uptime and version, or why it is unhealthy."""
    return metrics.health(_state())


@blp.route("/api/v1/metrics", methods=["GET"])
@blp.public
@blp.response(200, MetricsSchema)
def get_metrics():
    """Host and agent metrics: the reference's nested figures and the SDK's flat ones, all measured."""
    return metrics.metrics(_state())


@blp.route("/api/v1/workflows/execute", methods=["POST"])
@blp.public
@blp.arguments(WorkflowSchema)
@blp.response(200, WorkflowResultSchema)
@blp.error(502, "The run failed (the model provider, or a worker)")
@blp.error(504, "The run did not finish within [runtime] workflow_timeout_secs")
@blp.error(409, "The run was cancelled")
def execute_workflow(body):
    """Run a stored agent (by id or name) or DSL source to completion and answer its result."""
    return service.run_workflow(_settings(), body)


@agents_blp.route("", methods=["GET"])
@agents_blp.doc(**AGENT_IDS_DOC)
def list_agents():
    """The id of every agent, oldest first."""
    return jsonify(service.list_agent_ids())


@agents_blp.route("", methods=["POST"])
@agents_blp.arguments(AgentCreateSchema)
@agents_blp.response(200, CreatedSchema)
@agents_blp.error(409, "An agent with this id or name exists")
def create_agent(body):
    """Create an agent from DSL source (`dsl`), or from the SDK's body."""
    agent = service.create_agent(_settings(), body)
    return {"id": agent.id, "status": "created"}


@agents_blp.route("/<agent_id>", methods=["GET"])
@agents_blp.response(200, AgentSchema)
def get_agent(agent_id):
    """One agent with its DSL source and parsed definition."""
    return service.find_agent(agent_id)


@agents_blp.route("/<agent_id>", methods=["PUT"])
@agents_blp.arguments(AgentUpdateSchema)
@agents_blp.response(200, CreatedSchema)
@agents_blp.error(409, "Another agent has this name")
def update_agent(body, agent_id):
    """Change an agent's name or DSL (at least one)."""
    agent = service.update_agent(_settings(), agent_id, body)
    return {"id": agent.id, "status": "updated"}


@agents_blp.route("/<agent_id>", methods=["DELETE"])
@agents_blp.response(200, CreatedSchema)
def delete_agent(agent_id):
    """Delete an agent with its executions."""
    service.delete_agent(agent_id)
    return {"id": agent_id, "status": "deleted"}


@agents_blp.route("/<agent_id>/status", methods=["GET"])
@agents_blp.response(200, AgentStatusSchema)
def agent_status(agent_id):
    """State and resource use, measured from its executions of the last minute."""
    return service.agent_status(_settings(), agent_id)


@agents_blp.route("/<agent_id>/execute", methods=["POST"])
@agents_blp.arguments(ExecuteSchema, required=False, description="Optional: `{}` runs the agent without input")
@agents_blp.response(200, ExecutionStartedSchema)
@agents_blp.error(409, "The Idempotency-Key was used for a different request")
@agents_blp.doc(**IDEMPOTENCY_DOC)
def execute_agent(body, agent_id):
    """Queue an execution and answer at once."""
    return service.execute(_settings(), agent_id, body, request.headers.get("Idempotency-Key"))


@agents_blp.route("/<agent_id>/history", methods=["GET"])
@agents_blp.arguments(HistoryQuerySchema, location="query")
@agents_blp.response(200, HistorySchema)
def agent_history(args, agent_id):
    """Its executions, newest first, with their results or errors."""
    rows, total = service.history(agent_id, args["limit"], args["offset"])
    return {"history": rows, "total": total}


@agents_blp.route("/<agent_id>/executions/<execution_id>", methods=["GET"])
@agents_blp.response(200, ExecutionSchema)
def get_execution(agent_id, execution_id):
    """One execution."""
    return service.find_execution(agent_id, execution_id)


@agents_blp.route("/<agent_id>/executions/<execution_id>/cancel", methods=["POST"])
@agents_blp.response(200, ExecutionSchema)
@agents_blp.error(409, "The execution already ended")
def cancel_execution(agent_id, execution_id):
    """Cancel a queued or running execution."""
    return service.cancel(agent_id, execution_id)
