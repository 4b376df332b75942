"""Discord through the gateway websocket (https://discord.com/developers/docs/events/gateway).

Hello gives the heartbeat interval; Identify (or Resume, with the session id,
the last sequence number and ``resume_gateway_url``) opens the session.
Heartbeats carry the last sequence number; the time to their ACK (op 11) is
the channel's measured latency, and a heartbeat left unacknowledged means a
dead connection. Op 7 asks to reconnect and resume; op 9 says the session is
invalid (resumable or not). Replies go through the REST API.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time

from app.channels.connectors import ChannelError, Inbound, split
from app.channels.connectors.gateway import Closed, Socket
from app.channels.connectors.http import Http, Reply

log = logging.getLogger("channel::discord")

REPLY_LIMIT = 2000
GUILDS, GUILD_MESSAGES, DIRECT_MESSAGES, MESSAGE_CONTENT = 1 << 0, 1 << 9, 1 << 12, 1 << 15
INTENTS = GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT
DISPATCH, HEARTBEAT, IDENTIFY, RESUME, RECONNECT, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 0, 1, 2, 6, 7, 9, 10, 11
# Close codes after which Identify must start over, and those no retry will fix.
FRESH_SESSION_CODES = {4007, 4009}
PERMANENT_CODES = {4004: "Invalid bot token", 4010: "Invalid shard", 4011: "Sharding required",
                   4012: "Invalid API version", 4013: "Invalid intents",
                   4014: "Disallowed intents: enable the Message Content intent for this bot"}


class Connector:
    reply_limit = REPLY_LIMIT
    typing_every_secs = 8.0  # Discord's indicator lasts ten seconds

    def __init__(self, config):
        self.config = config
        self.token = config.get("bot_token")
        self.http = Http(config.get("api_url"), {"Authorization": f"Bot {self.token}"})
        self.socket: Socket | None = None
        # Kept across reconnects of one run, so the next connection resumes instead of identifying.
        self.session_id: str | None = None
        self.resume_url: str | None = None
        self.seq: int | None = None
        self.bot_id: str | None = None
        self._acked = True
        self._heartbeat_sent = 0.0

    # ---- the connection ------------------------------------------------------------

    def serve(self, link) -> None:
        resuming = bool(self.session_id and self.resume_url)
        url = self.resume_url if resuming else self._gateway_url()
        self.socket = Socket(_with_query(url), read_timeout=60.0)
        self._acked = True
        beat = threading.Event()
        try:
            hello = self.socket.receive()
            if not hello or hello.get("op") != HELLO:
                raise ChannelError("the gateway did not say Hello")
            interval = hello["d"]["heartbeat_interval"] / 1000
            self.socket.ws.settimeout(interval * 3)
            threading.Thread(target=self._heartbeats, args=(link, interval, beat), daemon=True).start()
            self.socket.send(self._resume() if resuming else self._identify())
            while not link.stopping:
                message = self.socket.receive()
                link.activity()
                if message is not None:
                    self._on(link, message, interval)
        except Closed as closed:
            raise self._closed(closed) from None
        finally:
            beat.set()
            self.socket.abort()

    def _gateway_url(self) -> str:
        reply = self.http.call("GET", "/gateway/bot")
        body = _checked(reply)
        if not isinstance(body, dict) or not body.get("url"):
            raise ChannelError("Discord gave no gateway URL")
        return body["url"]

    def _identify(self) -> dict:
        return {"op": IDENTIFY, "d": {"token": self.token, "intents": INTENTS,
                                      "properties": {"os": "linux", "browser": "lockgate", "device": "lockgate"}}}

    def _resume(self) -> dict:
        return {"op": RESUME, "d": {"token": self.token, "session_id": self.session_id, "seq": self.seq}}

    def _on(self, link, message: dict, interval: float) -> None:
        op = message.get("op")
        if message.get("s") is not None:
            self.seq = message["s"]
        if op == DISPATCH:
            self._dispatch(link, message.get("t"), message.get("d") or {}, interval)
        elif op == HEARTBEAT:
            self._beat()  # the gateway asks for one now
        elif op == HEARTBEAT_ACK:
            self._acked = True
            link.latency((time.monotonic() - self._heartbeat_sent) * 1000)
        elif op == RECONNECT:
            raise ChannelError("Discord asked to reconnect")
        elif op == INVALID_SESSION:
            if not message.get("d"):
                self._forget_session()
            link.wait(random.uniform(1, 5))  # as the documentation asks, before identifying again
            raise ChannelError("Discord invalidated the session")

    def _dispatch(self, link, event: str, data: dict, interval: float) -> None:
        if event == "READY":
            self.session_id = data.get("session_id")
            self.resume_url = data.get("resume_gateway_url")
            self.bot_id = str((data.get("user") or {}).get("id") or "")
            link.connected(interval)
        elif event == "RESUMED":
            link.connected(interval)
        elif event == "MESSAGE_CREATE":
            inbound = self._inbound(data)
            if inbound is not None:
                link.receive([inbound])

    def _inbound(self, data: dict) -> Inbound | None:
        author = data.get("author") or {}
        if author.get("bot") or not author.get("id") or not isinstance(data.get("content"), str):
            return None
        guild = data.get("guild_id")
        mentioned = any(str(m.get("id")) == self.bot_id for m in data.get("mentions") or [])
        if guild is not None and not mentioned:
            return None  # in a server, only messages that mention the bot start turns
        allowed_guilds = [str(g) for g in self.config.get("allowed_guilds")]
        if guild is not None and allowed_guilds and str(guild) not in allowed_guilds:
            log.info("channel %s: message in guild %s ignored: not in allowed_guilds", self.config.name, guild)
            return None
        content = re.sub(rf"<@!?{re.escape(self.bot_id or '-')}>", "", data["content"]).strip()
        return Inbound(external_id=str(data["id"]), chat_id=str(data["channel_id"]), user_id=str(author["id"]),
                       content=content, username=author.get("username"))

    def _heartbeats(self, link, interval: float, stop: threading.Event) -> None:
        if stop.wait(interval * random.random()):  # the first one jittered, as the documentation asks
            return
        while not stop.is_set():
            if not self._acked:
                log.warning("channel %s: heartbeat not acknowledged; reconnecting", self.config.name)
                self.socket.abort()
                return
            try:
                self._beat()
            except ChannelError:
                return
            if stop.wait(interval):
                return

    def _beat(self) -> None:
        self._acked = False
        self._heartbeat_sent = time.monotonic()
        self.socket.send({"op": HEARTBEAT, "d": self.seq})

    def _closed(self, closed: Closed) -> ChannelError:
        if closed.code in PERMANENT_CODES:
            self._forget_session()
            return ChannelError(PERMANENT_CODES[closed.code], permanent=True)
        if closed.code in FRESH_SESSION_CODES:
            self._forget_session()
        return ChannelError(f"the gateway closed the connection ({closed.code or 'no close code'})")

    def _forget_session(self) -> None:
        self.session_id = self.resume_url = self.seq = None

    def abort(self) -> None:
        if self.socket is not None:
            self.socket.abort()

    # ---- replies, from any worker ------------------------------------------------------

    def send(self, chat_id: str, text: str, thread: str | None = None) -> None:
        for piece in split(text, self.reply_limit):
            _checked(self.http.call("POST", f"/channels/{chat_id}/messages", {"content": piece}))

    def typing(self, chat_id: str) -> None:
        _checked(self.http.call("POST", f"/channels/{chat_id}/typing", {}))


def _with_query(url: str) -> str:
    return url.rstrip("/") + "/?v=10&encoding=json"


def _checked(reply: Reply):
    if reply.status == 401:
        raise ChannelError("Invalid bot token", permanent=True)
    if reply.status == 429:
        after = (reply.body or {}).get("retry_after") if isinstance(reply.body, dict) else None
        raise ChannelError("Discord asks to slow down (429)", retry_after=float(after) if after else None)
    if reply.status >= 400:
        message = reply.body.get("message") if isinstance(reply.body, dict) else None
        raise ChannelError(f"Discord refused the request: HTTP {reply.status} {str(message or '')[:200]}".rstrip())
    return reply.body
