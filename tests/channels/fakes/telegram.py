"""A Telegram Bot API server for tests, written from https://core.telegram.org/bots/api.

Methods live at ``/bot<token>/<method>``, take JSON or query parameters and
answer ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code", "description"}``.
``getUpdates`` is long polling: it waits up to ``timeout`` seconds for updates
whose ``update_id`` is at least ``offset``. Unlike Telegram, which forgets
confirmed updates, this server keeps them all, so a poller that lost its
offset would be seen receiving an update twice.
"""

from __future__ import annotations

import itertools
import time

from tests.channels.fakes.base import FakeHttp


class FakeTelegram(FakeHttp):
    def __init__(self, token: str = "123:good-token"):
        super().__init__()
        self.tokens = {token}
        self.token = token
        self.updates: list[dict] = []
        self._ids = itertools.count(1000)
        self.sent: list[dict] = []  # sendMessage calls: chat_id, text, at
        self.actions: list[dict] = []
        self.webhook_deleted = 0
        self.conflict = False  # answer getUpdates with 409, as when another client polls
        self.handed_out: list[int] = []  # every update_id returned by getUpdates, in order
        self.failing_sends = 0  # this many next sendMessage calls fail with 500

    def message(self, chat_id: int, user_id: int, text: str, username: str | None = None) -> int:
        """A user writes to the bot; the update id."""
        with self.lock:
            update_id = next(self._ids)
            sender = {"id": user_id, "is_bot": False, "first_name": "Test"}
            if username:
                sender["username"] = username
            self.updates.append({"update_id": update_id, "message": {
                "message_id": update_id, "date": int(time.time()), "from": sender,
                "chat": {"id": chat_id, "type": "private"}, "text": text}})
            self.lock.notify_all()
        return update_id

    def replies_to(self, chat_id: int) -> list[str]:
        with self.lock:
            return [sent["text"] for sent in self.sent if str(sent["chat_id"]) == str(chat_id)]

    def route(self, method, path, params, headers):
        parts = path.strip("/").split("/")
        if len(parts) != 2 or not parts[0].startswith("bot"):
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        token, name = parts[0][3:], parts[1]
        if token not in self.tokens:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        handler = getattr(self, f"_{name}", None)
        if handler is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
        return handler(params)

    def _getMe(self, params):
        return 200, {"ok": True, "result": {"id": 42, "is_bot": True, "first_name": "Lockgate", "username": "lg_bot"}}

    def _deleteWebhook(self, params):
        with self.lock:
            self.webhook_deleted += 1
        return 200, {"ok": True, "result": True}

    def _getUpdates(self, params):
        if self.conflict:
            return 409, {"ok": False, "error_code": 409,
                         "description": "Conflict: terminated by other getUpdates request"}
        offset = int(params.get("offset") or 0)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        with self.lock:
            while True:
                ready = [u for u in self.updates if u["update_id"] >= offset][:100]
                left = deadline - time.monotonic()
                if ready or left <= 0:
                    break
                self.lock.wait(left)
            self.handed_out.extend(u["update_id"] for u in ready)
        return 200, {"ok": True, "result": ready}

    def _sendMessage(self, params):
        text = str(params.get("text", ""))
        with self.lock:
            if self.failing_sends > 0:
                self.failing_sends -= 1
                return 500, {"ok": False, "error_code": 500, "description": "Internal Server Error"}
        if not text or len(text) > 4096:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}
        with self.lock:
            self.sent.append({"chat_id": params["chat_id"], "text": text, "at": time.monotonic()})
            self.lock.notify_all()
        return 200, {"ok": True, "result": {"message_id": len(self.sent), "text": text}}

    def _sendChatAction(self, params):
        with self.lock:
            self.actions.append(params)
        return 200, {"ok": True, "result": True}
