from app.core.areas import Area
from app.core.auth import EnvToken
from app.runtime import executor, service
from app.runtime.routes import agents_blp, blp

AREA = Area(
    name="runtime",
    blueprints=(blp, agents_blp),
    events={
        "agent.created": "A runtime agent was created",
        "agent.deleted": "A runtime agent was deleted, with its executions",
        "agent.execution.started": "A runtime execution started running (again, after a worker was lost)",
        "agent.execution.completed": "A runtime execution completed with a result",
        "agent.execution.failed": "A runtime execution failed or timed out",
    },
    status=service.status_counts,
    jobs=(executor.KIND,),
    background=(executor.start,),
    # Symbiont deployments set API_AUTH_TOKEN; it is accepted on this API only.
    env_tokens=(EnvToken("API_AUTH_TOKEN", "write", frozenset({"runtime", "agents"})),),
)
