from app.core.areas import Area
from app.status import service
from app.status.routes import blp

AREA = Area(name="status", blueprints=(blp,), status=service.stream_counts)
