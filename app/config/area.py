from app.cli import config as config_cli
from app.config.routes import blp
from app.core.areas import Area

AREA = Area(
    name="config",
    blueprints=(blp,),
    events={"config.updated": "The runtime configuration changed"},
    cli=(config_cli.group,),
)
