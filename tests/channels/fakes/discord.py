"""A Discord REST API and gateway for tests, from https://discord.com/developers/docs (Gateway, Messages).

REST: ``GET /gateway/bot`` (``Authorization: Bot <token>``), ``POST /channels/{id}/messages``
(at most 2,000 characters) and ``POST /channels/{id}/typing``. Gateway: Hello (op 10) with
``heartbeat_interval``; Identify (op 2) → READY with ``session_id`` and ``resume_gateway_url``;
Resume (op 6) replays the events after ``seq`` → RESUMED; heartbeats (op 1) → ACK (op 11);
bad token → close 4004. The test side sends MESSAGE_CREATE, Reconnect (op 7) and Invalid Session (op 9).
"""

from __future__ import annotations

import itertools
import re
import threading
import time

from tests.channels.fakes.base import FakeHttp
from tests.channels.fakes.websocket import FakeSocketServer

BOT_ID = "900000000000000001"


class FakeDiscord(FakeHttp, FakeSocketServer):
    def __init__(self, token: str = "discord-good-token", heartbeat_ms: int = 500):
        FakeHttp.__init__(self)
        FakeSocketServer.__init__(self)
        self.token = token
        self.heartbeat_ms = heartbeat_ms
        self.ack_delay = 0.0  # seconds before a heartbeat is acknowledged
        self.identifies: list[dict] = []
        self.resumes: list[dict] = []
        self.heartbeats: list = []  # the sequence number each heartbeat carried
        self.sent: list[dict] = []
        self.typing: list[str] = []
        self._seq = 0
        self._sessions: dict[str, list[dict]] = {}  # session id -> its dispatched events
        self._session_of: dict = {}  # connection -> session id
        self._ids = itertools.count(1)
        self._snowflakes = itertools.count(1_100_000_000_000_000_000)

    def start(self):
        self.start_socket()
        return FakeHttp.start(self)

    def stop(self):
        FakeHttp.stop(self)
        self.stop_socket()

    # ---- REST ----------------------------------------------------------------------

    def route(self, method, path, params, headers):
        if headers.get("Authorization") != f"Bot {self.token}":
            return 401, {"message": "401: Unauthorized", "code": 0}
        if method == "GET" and path.endswith("/gateway/bot"):
            return 200, {"url": self.ws_url, "shards": 1,
                         "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0,
                                                 "max_concurrency": 1}}
        match = re.search(r"/channels/(\d+)/(messages|typing)$", path)
        if method == "POST" and match:
            channel, what = match.groups()
            with self.lock:
                if what == "typing":
                    self.typing.append(channel)
                    return 200, {}
                content = str(params.get("content", ""))
                if not content or len(content) > 2000:
                    return 400, {"message": "Invalid Form Body", "code": 50035}
                self.sent.append({"channel_id": channel, "content": content})
            return 200, {"id": str(next(self._snowflakes)), "channel_id": channel, "content": content}
        return 404, {"message": "404: Not Found", "code": 0}

    def replies_in(self, channel_id) -> list[str]:
        with self.lock:
            return [sent["content"] for sent in self.sent if sent["channel_id"] == str(channel_id)]

    # ---- the gateway ---------------------------------------------------------------

    def on_open(self, connection):
        self.send(connection, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_ms}, "s": None, "t": None})

    def on_message(self, connection, message):
        op, data = message.get("op"), message.get("d")
        if op == 1:
            with self.lock:
                self.heartbeats.append(data)
            threading.Thread(target=self._ack, args=(connection,), daemon=True).start()
        elif op == 2:
            if data.get("token") != self.token:
                connection.close(4004, "Authentication failed.")
                return
            session_id = f"session-{next(self._ids)}"
            with self.lock:
                self.identifies.append(data)
                self._sessions[session_id] = []
                self._session_of[connection] = session_id
            self._dispatch(connection, "READY", {"v": 10, "session_id": session_id, "resume_gateway_url": self.ws_url,
                                                 "user": {"id": BOT_ID, "username": "lockgate", "bot": True},
                                                 "guilds": []})
        elif op == 6:
            with self.lock:
                self.resumes.append(data)
                events = self._sessions.get(data.get("session_id"))
            if events is None or data.get("token") != self.token:
                self.send(connection, {"op": 9, "d": False, "s": None, "t": None})
                return
            with self.lock:
                self._session_of[connection] = data["session_id"]
            for event in [e for e in events if e["s"] > (data.get("seq") or 0)]:
                self.send(connection, event)
            self._dispatch(connection, "RESUMED", {})

    def _ack(self, connection):
        time.sleep(self.ack_delay)
        self.send(connection, {"op": 11, "d": None, "s": None, "t": None})

    def _dispatch(self, connection, event: str, data: dict) -> None:
        with self.lock:
            self._seq += 1
            frame = {"op": 0, "t": event, "s": self._seq, "d": data}
            session = self._session_of.get(connection)
            if session is not None:
                self._sessions[session].append(frame)
        self.send(connection, frame)

    def wait_ready(self, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            connection = self.current()
            if connection is not None and connection in self._session_of:
                return connection
            time.sleep(0.05)
        raise AssertionError("no gateway session within the timeout")

    def message(self, channel_id, user_id, content: str, guild_id=None, mention: bool = False) -> str:
        """A user posts a message the bot can see; its id."""
        message_id = str(next(self._snowflakes))
        data = {"id": message_id, "channel_id": str(channel_id), "content": content,
                "author": {"id": str(user_id), "username": f"user{user_id}"},
                "mentions": [{"id": BOT_ID, "username": "lockgate", "bot": True}] if mention else [],
                "timestamp": "2026-03-21T10:00:00.000000+00:00"}
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
        self._dispatch(self.wait_ready(), "MESSAGE_CREATE", data)
        return message_id

    def ask_to_reconnect(self) -> None:
        self.send(self.wait_ready(), {"op": 7, "d": None, "s": None, "t": None})

    def invalidate_session(self, resumable: bool = False) -> None:
        self.send(self.wait_ready(), {"op": 9, "d": resumable, "s": None, "t": None})
