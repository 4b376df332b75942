"""Slack through Socket Mode (https://api.slack.com/apis/socket-mode).

``apps.connections.open`` (with the app-level ``xapp-`` token) gives a
websocket URL; Slack says ``hello``, then sends envelopes, each acknowledged
at once with its ``envelope_id``. Mentions of the bot and direct messages
start turns; replies go to the message's thread with ``chat.postMessage``
(the ``xoxb-`` bot token). The measured latency is an ``auth.test`` round trip.
"""

from __future__ import annotations

import logging
import re
import threading
import time

from app.channels.connectors import HTTP_TIMEOUT, ChannelError, Inbound, split
from app.channels.connectors.gateway import Closed, Socket
from app.channels.connectors.http import Http, Reply

log = logging.getLogger("channel::slack")

REPLY_LIMIT = 4000  # Slack's advice for the text of one message
PING_SECS = 10.0
INVALID_TOKEN_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}


class Connector:
    reply_limit = REPLY_LIMIT

    def __init__(self, config):
        self.config = config
        self.web = Http(config.get("api_url"))
        self.socket: Socket | None = None
        self.bot_user: str | None = None

    @property
    def cadence_secs(self) -> float:
        return PING_SECS

    def _call(self, method: str, token: str, payload: dict | None = None, words: str = "bot token",
              timeout: float = HTTP_TIMEOUT):
        reply = self.web.call("POST", f"/{method}", payload or {}, headers={"Authorization": f"Bearer {token}"},
                              timeout=timeout)
        return _checked(reply, words)

    # ---- the connection ------------------------------------------------------------

    def serve(self, link) -> None:
        started = time.perf_counter()
        identity = self._call("auth.test", self.config.get("bot_token"))
        link.latency((time.perf_counter() - started) * 1000)
        self.bot_user = identity.get("user_id")
        opened = self._call("apps.connections.open", self.config.get("app_token"), words="app token")
        self.socket = Socket(opened["url"], read_timeout=PING_SECS * 3)
        stop = threading.Event()
        threading.Thread(target=self._pings, args=(stop,), daemon=True).start()
        try:
            while not link.stopping:
                message = self.socket.receive()
                link.activity()
                if message is not None:
                    self._on(link, message)
        except Closed as closed:
            raise ChannelError(f"Slack closed the connection ({closed.code or 'no close code'})") from None
        finally:
            stop.set()
            self.socket.abort()

    def _on(self, link, message: dict) -> None:
        kind = message.get("type")
        if message.get("envelope_id"):
            self.socket.send({"envelope_id": message["envelope_id"]})  # within three seconds, before any work
        if kind == "hello":
            link.connected(PING_SECS)
        elif kind == "disconnect":
            raise ChannelError(f"Slack asked to reconnect ({message.get('reason', 'no reason given')})")
        elif kind == "events_api":
            payload = message.get("payload") or {}
            inbound = self._inbound(payload.get("event") or {}, payload.get("event_id"))
            if inbound is not None:
                link.receive([inbound])

    def _inbound(self, event: dict, event_id: str | None) -> Inbound | None:
        kind = event.get("type")
        direct = kind == "message" and event.get("channel_type") == "im" and not event.get("subtype")
        if not (kind == "app_mention" or direct):
            return None
        user, text = event.get("user"), event.get("text")
        if event.get("bot_id") or not user or user == self.bot_user or not isinstance(text, str):
            return None
        content = re.sub(rf"<@{re.escape(self.bot_user or '-')}(\|[^>]*)?>", "", text).strip()
        ts = event.get("ts") or ""
        return Inbound(external_id=event_id or f"{event.get('channel')}:{ts}", chat_id=str(event.get("channel")),
                       user_id=str(user), content=content, thread=event.get("thread_ts") or ts or None)

    def _pings(self, stop: threading.Event) -> None:
        while not stop.wait(PING_SECS):
            try:
                self.socket.ping()
            except ChannelError:
                return

    def abort(self) -> None:
        self.web.abort()
        if self.socket is not None:
            self.socket.abort()

    def probe(self, timeout: float = HTTP_TIMEOUT) -> float:
        started = time.perf_counter()
        self._call("auth.test", self.config.get("bot_token"), timeout=timeout)
        return (time.perf_counter() - started) * 1000

    # ---- replies, from any worker ------------------------------------------------------

    def send(self, chat_id: str, text: str, thread: str | None = None) -> None:
        for piece in split(text, self.reply_limit):
            payload = {"channel": chat_id, "text": piece}
            if thread:
                payload["thread_ts"] = thread
            self._call("chat.postMessage", self.config.get("bot_token"), payload)


def _checked(reply: Reply, words: str) -> dict:
    body = reply.body if isinstance(reply.body, dict) else {}
    if reply.status == 429:
        after = reply.headers.get("retry-after")
        raise ChannelError("Slack asks to slow down (429)", retry_after=float(after) if after else None)
    if body.get("ok"):
        return body
    error = str(body.get("error") or f"HTTP {reply.status}")
    if error in INVALID_TOKEN_ERRORS:
        raise ChannelError(f"Invalid {words}", permanent=True)
    raise ChannelError(f"Slack refused the request: {error[:200]}")
