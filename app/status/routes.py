from app.core.api import Blueprint
from app.status import service
from app.status.schemas import HealthSchema, StatusSchema

blp = Blueprint("status", __name__, url_prefix="/api/v1/status", description="System status and health")


# Both routes are direct (app.core.direct): polled often, they cost a fraction of a Flask request.
@blp.route("", methods=["GET"])
@blp.response(200, StatusSchema)
@blp.direct
def get_status(state):
    """Whole-system status, computed from live state.

    The areas' figures are at most 0.1 s old: a worker computes them afresh after
    that, and at once after it changed anything itself."""
    return service.status(state), 200


@blp.route("/health", methods=["GET"])
@blp.public
@blp.rate_limit("probes")
@blp.response(200, HealthSchema)
@blp.alt_response(503, schema=HealthSchema,
                  description="The database cannot be reached, or its SQLite file was deleted or replaced")
@blp.direct
def health(_state):
    """Lightweight probe for load balancers; no token needed."""
    healthy = service.database_reachable()
    return {"healthy": healthy}, 200 if healthy else 503
