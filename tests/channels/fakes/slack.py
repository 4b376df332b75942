"""A Slack Web API and Socket Mode server for tests, written from Slack's Socket Mode documentation.

Web API methods are ``POST /<method>`` with ``Authorization: Bearer <token>`` answering
``{"ok": ...}``: ``auth.test`` and ``chat.postMessage`` take the bot token (``xoxb-``),
``apps.connections.open`` the app token (``xapp-``) and gives a websocket URL. On the socket
Slack says ``hello``, then sends envelopes (``envelope_id``, ``type``, ``payload``) that the
app acknowledges by sending ``{"envelope_id": ...}`` back; ``disconnect`` asks it to reconnect.
"""

from __future__ import annotations

import itertools
import time
import uuid

from tests.channels.fakes.base import FakeHttp
from tests.channels.fakes.websocket import FakeSocketServer

BOT_USER = "UBOT0001"


class FakeSlack(FakeHttp, FakeSocketServer):
    def __init__(self, bot_token: str = "xoxb-good", app_token: str = "xapp-good"):
        FakeHttp.__init__(self)
        FakeSocketServer.__init__(self)
        self.bot_token, self.app_token = bot_token, app_token
        self.posted: list[dict] = []
        self.envelopes: dict[str, dict] = {}  # envelope id -> envelope, in sending order
        self.acked: list[str] = []
        self.opened_urls = 0
        self._ts = itertools.count(1)

    def start(self):
        self.start_socket()
        return FakeHttp.start(self)

    def stop(self):
        FakeHttp.stop(self)
        self.stop_socket()

    # ---- the Web API ---------------------------------------------------------------

    def route(self, method, path, params, headers):
        name = path.strip("/")
        token = (headers.get("Authorization") or "").removeprefix("Bearer ")
        wanted = self.app_token if name == "apps.connections.open" else self.bot_token
        if token != wanted:
            return 200, {"ok": False, "error": "invalid_auth"}
        if name == "auth.test":
            return 200, {"ok": True, "url": "https://lockgate.slack.test/", "team": "Test", "user": "lockgate",
                         "team_id": "T0001", "user_id": BOT_USER}
        if name == "apps.connections.open":
            with self.lock:
                self.opened_urls += 1
            return 200, {"ok": True, "url": f"{self.ws_url}/link/?ticket={uuid.uuid4()}&app_id=A0001"}
        if name == "chat.postMessage":
            text = str(params.get("text", ""))
            if not text:
                return 200, {"ok": False, "error": "no_text"}
            with self.lock:
                self.posted.append({"channel": params.get("channel"), "text": text,
                                    "thread_ts": params.get("thread_ts")})
            return 200, {"ok": True, "channel": params.get("channel"), "ts": f"{time.time():.6f}"}
        return 200, {"ok": False, "error": "unknown_method"}

    def replies_in(self, channel) -> list[dict]:
        with self.lock:
            return [post for post in self.posted if post["channel"] == channel]

    # ---- Socket Mode ---------------------------------------------------------------

    def on_open(self, connection):
        self.send(connection, {"type": "hello", "num_connections": 1,
                               "connection_info": {"app_id": "A0001"}, "debug_info": {"host": "fake"}})

    def on_message(self, connection, message):
        if "envelope_id" in message:
            with self.lock:
                self.acked.append(message["envelope_id"])

    def wait_connected(self, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            connection = self.current()
            if connection is not None:
                return connection
            time.sleep(0.05)
        raise AssertionError("no Socket Mode connection within the timeout")

    def event(self, event: dict) -> tuple[str, str]:
        """Deliver an Events API event; (envelope id, event ts)."""
        ts = f"1700000000.{next(self._ts):06d}"
        envelope_id = str(uuid.uuid4())
        envelope = {"envelope_id": envelope_id, "type": "events_api", "accepts_response_payload": False,
                    "retry_attempt": 0, "retry_reason": "",
                    "payload": {"token": "verification", "team_id": "T0001", "api_app_id": "A0001",
                                "type": "event_callback", "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
                                "event_time": int(time.time()), "event": {"ts": ts, "event_ts": ts, **event}}}
        with self.lock:
            self.envelopes[envelope_id] = envelope
        self.send(self.wait_connected(), envelope)
        return envelope_id, ts

    def direct_message(self, user: str, text: str, channel: str = "D0001"):
        return self.event({"type": "message", "channel_type": "im", "channel": channel, "user": user, "text": text})

    def mention(self, user: str, text: str, channel: str = "C0001"):
        return self.event({"type": "app_mention", "channel": channel, "user": user,
                           "text": f"<@{BOT_USER}> {text}"})

    def ask_to_reconnect(self) -> None:
        self.send(self.wait_connected(), {"type": "disconnect", "reason": "refresh_requested",
                                          "debug_info": {"host": "fake"}})
