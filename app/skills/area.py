from app.core.areas import Area
from app.skills import service
from app.skills.routes import blp

AREA = Area(
    name="skills",
    blueprints=(blp,),
    prompt_contributors=(service.contributions,),
)
