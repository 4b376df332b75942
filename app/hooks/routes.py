from flask import current_app

from app.core.api import Blueprint
from app.hooks import service
from app.hooks.schemas import (
    DeliveriesQuerySchema,
    DeliveriesSchema,
    DeliverySchema,
    HookCreateSchema,
    HookPatchSchema,
    HookSchema,
    HooksSchema,
    HookWithSecretSchema,
)

blp = Blueprint("hooks", __name__, url_prefix="/api/v1/hooks",
                description="Webhooks: signed (Standard Webhooks), retried deliveries of events")


def _allow_private() -> bool:
    return current_app.extensions["lockgate"].settings.get("hooks.allow_private_targets")


@blp.route("", methods=["GET"])
@blp.response(200, HooksSchema)
def list_hooks():
    """Registered webhooks (secrets are never shown)."""
    return {"hooks": service.list_hooks()}


@blp.route("", methods=["POST"])
@blp.arguments(HookCreateSchema)
@blp.response(201, HookWithSecretSchema)
def create_hook(data):
    """Register a webhook; without a ``secret`` one is generated and returned in this response only."""
    return service.create_hook(data, _allow_private())


@blp.route("/<hook_id>", methods=["GET"])
@blp.response(200, HookSchema)
def get_hook(hook_id):
    """One webhook."""
    return service.get_hook(hook_id)


@blp.route("/<hook_id>", methods=["PATCH"])
@blp.arguments(HookPatchSchema)
@blp.response(200, HookWithSecretSchema)
def update_hook(changes, hook_id):
    """Change url, events or active, or the secret (``rotate_secret: true`` returns a new one once)."""
    return service.update_hook(hook_id, changes, _allow_private())


@blp.route("/<hook_id>", methods=["DELETE"])
@blp.response(204)
def delete_hook(hook_id):
    """Remove a webhook with its deliveries."""
    service.delete_hook(hook_id)


@blp.route("/<hook_id>/deliveries", methods=["GET"])
@blp.arguments(DeliveriesQuerySchema, location="query")
@blp.response(200, DeliveriesSchema)
def list_deliveries(args, hook_id):
    """Recent deliveries, newest first, each with its attempts (status code, duration, error, next retry)."""
    return {"deliveries": service.list_deliveries(hook_id, args["status"], args["event"], args["limit"])}


@blp.route("/<hook_id>/test", methods=["POST"])
@blp.response(202, DeliverySchema)
@blp.error(409, "The hook is inactive")
def test_hook(hook_id):
    """Queue a ``ping`` event to this hook."""
    return service.send_test(hook_id)


@blp.route("/<hook_id>/deliveries/<delivery_id>/retry", methods=["POST"])
@blp.response(202, DeliverySchema)
@blp.error(409, "The hook is inactive, or the delivery is being sent right now")
def retry_delivery(hook_id, delivery_id):
    """Send a delivery again now, with the same ``webhook-id``."""
    return service.retry_delivery(hook_id, delivery_id)
