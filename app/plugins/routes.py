from flask import current_app

from app.core.api import Blueprint
from app.plugins import service
from app.plugins.schemas import ActionSchema, PluginsSchema

blp = Blueprint("plugins", __name__, url_prefix="/api/v1/plugins",
                description="WASM plugins: their status, and the tools they give agents",
                rate_limits=("plugins_read", "plugins_write"))


def _settings():
    return current_app.extensions["lockgate"].settings


@blp.route("", methods=["GET"])
@blp.response(200, PluginsSchema)
def list_plugins():
    """Every plugin, its status over every worker, its capabilities and its measured memory."""
    return {"plugins": service.list_plugins()}


@blp.route("/<name>/reload", methods=["POST"])
@blp.scope("admin")
@blp.response(200, ActionSchema)
def reload(name):
    """Read the plugin's directory again and swap the new version in, in every worker."""
    return service.reload(_settings(), name)


@blp.route("/<name>/disable", methods=["POST"])
@blp.scope("admin")
@blp.response(200, ActionSchema)
def disable(name):
    """Withdraw the plugin's tools (it stays loaded); survives restarts."""
    return service.set_disabled(_settings(), name, True)


@blp.route("/<name>/enable", methods=["POST"])
@blp.scope("admin")
@blp.response(200, ActionSchema)
def enable(name):
    """Offer the plugin's tools again."""
    return service.set_disabled(_settings(), name, False)
