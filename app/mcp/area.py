from app.core.areas import Area
from app.mcp import connection, service
from app.mcp.routes import blp

AREA = Area(
    name="mcp",
    blueprints=(blp,),
    status=service.status_counts,
    background=(connection.start,),
)
