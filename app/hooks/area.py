from app.core.areas import Area
from app.hooks import delivery, outbox
from app.hooks.routes import blp

AREA = Area(
    name="hooks",
    blueprints=(blp,),
    events={"hook.disabled": "A webhook was deactivated after too many consecutive failed deliveries"},
    on_publish=(outbox.enqueue,),
    jobs=(delivery.KIND,),
    background=(delivery.start,),
)
