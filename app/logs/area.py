from app.cli import logs as logs_cli
from app.core.areas import Area
from app.logs import sweeper
from app.logs.routes import blp

AREA = Area(name="logs", blueprints=(blp,), background=(sweeper.start,), cli=(logs_cli.group,))
