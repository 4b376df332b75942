from app.channels import dispatch, manager, service
from app.channels.routes import blp
from app.core.areas import Area

AREA = Area(
    name="channels",
    blueprints=(blp,),
    events={
        "channel.connected": "A channel's connection to its platform is up",
        "channel.disconnected": "A channel's connection to its platform went down (the error says why)",
        "channel.message.received": "A channel took in a message from an allowed user",
    },
    status=service.status_counts,
    jobs=(dispatch.KIND,),
    background=(manager.start,),
)
