from flask import current_app

from app.config import service
from app.config.schemas import ConfigPatchResultSchema, ConfigPatchSchema, ConfigSchema
from app.core.api import Blueprint

blp = Blueprint("config", __name__, url_prefix="/api/v1/config", description="Runtime configuration")


def _settings():
    return current_app.extensions["lockgate"].settings


@blp.route("", methods=["GET"])
@blp.response(200, ConfigSchema, description="The configuration as nested tables, secrets redacted")
def get_config():
    """The runtime configuration; every secret is shown as ``***REDACTED***``."""
    return _settings().redacted()


@blp.route("", methods=["PATCH"])
@blp.scope("admin")
@blp.rate_limit("config_write")
@blp.arguments(ConfigPatchSchema)
@blp.response(200, ConfigPatchResultSchema)
def patch_config(changes):
    """Change keys at runtime; ``reload_required`` says whether a restart is needed."""
    return service.patch(_settings(), changes)
