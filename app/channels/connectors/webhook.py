"""The generic webhook channel: anything that can sign an HTTP POST talks to an agent through it.

Senders POST ``{user_id, content, reply_url?, chat_id?}`` to
``/api/v1/channels/<name>/messages`` with Standard Webhooks headers signed with
the channel's ``secret``. There is no connection to keep: the channel is
connected as long as its secret is usable.
"""

from __future__ import annotations

from app.channels.connectors import ChannelError
from app.hooks import signing


class Connector:
    cadence_secs = None  # nothing upstream to hear from

    def __init__(self, config):
        self.config = config

    def serve(self, link) -> None:
        try:
            signing.decode_secret(self.config.get("secret"))
        except ValueError as exc:
            raise ChannelError(f"Invalid secret: {exc}", permanent=True) from None
        link.connected(None)
        while not link.wait(3600):
            pass

    def abort(self) -> None:
        return None

    def send(self, chat_id: str, text: str, thread: str | None = None) -> None:
        raise ChannelError("a webhook channel answers in the response or to reply_url only")
