from flask import current_app, request

from app.channels import service
from app.channels.schemas import (
    ChannelHealthSchema,
    ChannelRestartSchema,
    ChannelsSchema,
    WebhookMessageSchema,
    WebhookReplySchema,
)
from app.core import jsonbody
from app.core.api import Blueprint

blp = Blueprint("channels", __name__, url_prefix="/api/v1/channels",
                description="Messaging channels: live connections to Telegram, Discord, Slack and webhooks",
                rate_limits=("channels_read", "channels_write"))


def _state():
    return current_app.extensions["lockgate"]


@blp.route("", methods=["GET"])
@blp.response(200, ChannelsSchema)
def list_channels():
    """Every configured channel and its connection status, as every worker sees it."""
    return {"channels": service.list_channels(_state())}


@blp.route("/<name>/restart", methods=["POST"])
@blp.scope("admin")
@blp.response(200, ChannelRestartSchema)
@blp.error(409, "The api channel, which has no connection to restart")
def restart_channel(name):
    """Drop and re-open the channel's connection (in whichever worker holds it)."""
    return service.restart(_state(), name)


@blp.route("/<name>/health", methods=["GET"])
@blp.response(200, ChannelHealthSchema)
def channel_health(name):
    """Whether the channel is connected and alive, with a measured round trip to its platform."""
    return service.health(_state(), name)


@blp.route("/<name>/messages", methods=["POST"])
@blp.public
@blp.rate_limit("channels_inbound")
@blp.doc(requestBody={"content": {"application/json": {"schema": WebhookMessageSchema}}})
@blp.response(200, WebhookReplySchema)
@blp.alt_response(202, schema=WebhookReplySchema, description="Accepted: the reply goes to reply_url")
@blp.error(401, "Missing, invalid or stale Standard Webhooks signature")
@blp.error(403, "The user is not in the channel's allowed_users")
@blp.error(409, "The channel is disabled, or the chat is still being answered")
@blp.error(503, "The channel is misconfigured")
def post_message(name):
    """A message for a webhook channel, signed with the channel's secret (Standard Webhooks headers)."""
    return service.receive_webhook(_state(), name, request.headers, jsonbody.request_body(request))
