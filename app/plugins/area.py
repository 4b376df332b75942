from app.core.areas import Area
from app.plugins import host, service
from app.plugins.routes import blp

AREA = Area(
    name="plugins",
    blueprints=(blp,),
    events={
        "plugin.reloaded": "A plugin's directory was read again and its new version swapped in (by the API)",
        "plugin.disabled": "A plugin was disabled: its tools are withdrawn, it stays loaded",
        "plugin.enabled": "A disabled plugin was enabled again: its tools are offered",
    },
    status=service.status_counts,
    background=(host.start,),
)
