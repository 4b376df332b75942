from flask import current_app

from app.core.api import Blueprint
from app.skills import service
from app.skills.schemas import SkillsSchema

blp = Blueprint("skills", __name__, url_prefix="/api/v1/skills",
                description="Skills: instructions a turn takes on when its message triggers them",
                rate_limits=("skills_read", "skills_read"))


@blp.route("", methods=["GET"])
@blp.response(200, SkillsSchema)
def list_skills():
    """Every skill available to agents: builtin, from plugins, and the operator's own."""
    return {"skills": service.list_skills(current_app.extensions["lockgate"].settings)}
