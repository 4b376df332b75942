"""Telegram through the Bot API's long polling (https://core.telegram.org/bots/api#getupdates).

The connection is a loop of ``getUpdates`` calls, each waiting up to
``poll_timeout_secs`` for updates. ``offset`` (the last ``update_id`` + 1) is
stored with the messages it confirms, in one transaction, so a restart or
another worker resumes exactly after the last update taken in.
"""

from __future__ import annotations

import time

from app.channels.connectors import ChannelError, Inbound, split
from app.channels.connectors.http import Http, Reply

REPLY_LIMIT = 4096
POLL_MARGIN_SECS = 15.0  # the read timeout of a long poll exceeds the time Telegram may hold it


class Connector:
    reply_limit = REPLY_LIMIT

    def __init__(self, config):
        self.config = config
        base = f"{config.get('api_url').rstrip('/')}/bot{config.get('bot_token')}"
        self.http = Http(base)
        self.poll_timeout = config.get("poll_timeout_secs")

    @property
    def cadence_secs(self) -> float:
        return float(self.poll_timeout)

    def _call(self, method: str, payload: dict | None = None, timeout: float | None = None):
        kwargs = {} if timeout is None else {"timeout": timeout}
        return _result(self.http.call("POST", f"/{method}", payload or {}, **kwargs))

    # The connection (the channel's unit).

    def serve(self, link) -> None:
        link.latency(self.probe())  # getMe: checks the token and measures the round trip
        self._call("deleteWebhook", {"drop_pending_updates": False})  # long polling and a webhook exclude each other
        link.connected(self.cadence_secs)
        offset = int(link.cursor) if link.cursor else None
        while not link.stopping:
            query = {"timeout": self.poll_timeout, "allowed_updates": ["message"]}
            if offset is not None:
                query["offset"] = offset
            updates = self._call("getUpdates", query, timeout=self.poll_timeout + POLL_MARGIN_SECS)
            link.activity()
            if not updates or link.stopping:
                continue
            offset = max(update["update_id"] for update in updates) + 1
            inbound = [message for message in map(_inbound, updates) if message is not None]
            if not link.receive(inbound, str(offset)):
                return

    def abort(self) -> None:
        self.http.abort()

    def probe(self, timeout: float | None = None) -> float:
        """Milliseconds of one ``getMe`` round trip."""
        started = time.perf_counter()
        self._call("getMe", timeout=timeout)
        return (time.perf_counter() - started) * 1000

    # Replies, from any worker.

    def send(self, chat_id: str, text: str, thread: str | None = None) -> None:
        for piece in split(text, self.reply_limit):
            self._call("sendMessage", {"chat_id": _chat(chat_id), "text": piece})

    def typing(self, chat_id: str) -> None:
        self._call("sendChatAction", {"chat_id": _chat(chat_id), "action": "typing"})


def _chat(chat_id: str):
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id


def _inbound(update: dict) -> Inbound | None:
    message = update.get("message") or {}
    text, sender, chat = message.get("text"), message.get("from") or {}, message.get("chat") or {}
    if not isinstance(text, str) or "id" not in sender or "id" not in chat:
        return None  # photos, joins and other updates start no turn
    return Inbound(external_id=str(update["update_id"]), chat_id=str(chat["id"]), user_id=str(sender["id"]),
                   content=text, username=sender.get("username"))


def _result(reply: Reply):
    body = reply.body if isinstance(reply.body, dict) else {}
    if reply.status in (401, 404) and not body.get("ok"):
        # Telegram answers 401 for a revoked token and 404 for one that is not a token at all.
        raise ChannelError("Invalid bot token", permanent=True)
    if reply.status == 409:
        raise ChannelError("Conflict: another client is polling this bot, or a webhook is set")
    if reply.status == 429:
        after = (body.get("parameters") or {}).get("retry_after")
        raise ChannelError("Telegram asks to slow down (429)", retry_after=float(after) if after else None)
    if not body.get("ok"):
        description = body.get("description") or f"HTTP {reply.status}"
        raise ChannelError(f"Telegram refused the request: {str(description)[:200]}")
    return body.get("result")
