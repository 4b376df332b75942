"""Discord, Slack and the webhook channel end to end: one real gunicorn (2 workers), fake platforms.

The tests of the module share the server and the fakes and run in file order.
"""

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from standardwebhooks import Webhook

from app.channels.connectors.discord import DIRECT_MESSAGES, GUILD_MESSAGES, GUILDS, MESSAGE_CONTENT
from app.core.db import connection
from app.hooks import signing
from app.sessions.models import AgentSession
from tests.channels.fakes.discord import FakeDiscord
from tests.channels.fakes.slack import FakeSlack
from tests.channels.helpers import channel, config, status_is
from tests.support.http import Api
from tests.support.server import serve
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e

SECRET = signing.generate_secret()


# Each backend's run gets fresh fakes: what they record is asserted on.
@pytest.fixture(scope="module")
def discord(backend):
    fake = FakeDiscord(heartbeat_ms=1000).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def slack(backend):
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def receiver(backend):
    """Where webhook replies go: records each signed POST."""
    got = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"])).decode()
            got.append((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{http.server_address[1]}/replies", got
    http.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory, backend, discord, slack):
    channels = {
        "discord": {"bot_token": discord.token, "api_url": discord.url, "allowed_users": ["7001", "7002"]},
        "slack": {"bot_token": slack.bot_token, "app_token": slack.app_token, "api_url": slack.url,
                  "allowed_users": ["U0000ALICE"]},
        "webhook": {"secret": SECRET, "allowed_users": ["alice", "bob"]},
    }
    extra = {"hooks": {"allow_private_targets": True}}
    with serve(tmp_path_factory.mktemp("platforms"), backend, {**config(channels), **extra}) as instance:
        from app.core.db import init_database

        init_database(instance.database_url)
        yield instance


@pytest.fixture
def api(server):
    client = Api(server)
    yield client
    client.close()


def connected(api, name):
    return wait_until(lambda: status_is(api, name, "connected"), timeout=30,
                      message=lambda: f"{name} connected: {channel(api, name)}\n{api.server.log()[-3000:]}")


def until(predicate, what, timeout=20):
    return wait_until(predicate, timeout=timeout, message=what)


# ---- Discord ---------------------------------------------------------------------------


def test_discord_identifies_and_a_direct_message_is_answered_over_rest(api, discord):
    connected(api, "discord")
    assert discord.identifies[0]["intents"] == GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES | MESSAGE_CONTENT
    discord.message(channel_id=3001, user_id=7001, content="hello discord")
    assert until(lambda: discord.replies_in(3001), "a reply") == ["echo: hello discord"]
    assert "3001" in discord.typing
    with connection():
        session = AgentSession.get(AgentSession.channel == "discord")
    assert session.user_id == "7001"


def test_in_a_guild_only_mentions_start_turns(api, discord):
    discord.message(channel_id=3002, user_id=7001, content="just chatting", guild_id=55)
    discord.message(channel_id=3002, user_id=7002, content="<@900000000000000001> hi bot", guild_id=55, mention=True)
    assert until(lambda: discord.replies_in(3002), "a reply") == ["echo: hi bot"]
    discord.message(channel_id=3003, user_id=6666, content="intruder")  # a DM from a user not allowed
    discord.message(channel_id=3002, user_id=7002, content="<@900000000000000001> again", guild_id=55, mention=True)
    until(lambda: len(discord.replies_in(3002)) == 2, "the second reply")
    assert discord.replies_in(3003) == []


def test_discord_heartbeats_carry_the_sequence_and_their_ack_is_the_latency(api, discord):
    until(lambda: any(isinstance(seq, int) and seq > 1 for seq in discord.heartbeats), "a heartbeat with seq")
    fast = api.get("/channels/discord/health").json()
    assert fast["healthy"] is True and fast["latency_ms"] < 350  # below the delay injected next
    discord.ack_delay = 0.35
    try:
        slow = until(lambda: (body := api.get("/channels/discord/health").json())["latency_ms"] >= 350 and body,
                     "the delayed ACK measured")
    finally:
        discord.ack_delay = 0.0
    assert slow["healthy"] is True and slow["latency_ms"] < 1500


def test_discord_reconnect_resumes_and_invalid_session_identifies_again(api, discord):
    identified = len(discord.identifies)
    discord.ask_to_reconnect()
    until(lambda: discord.resumes, "a Resume")
    assert discord.resumes[-1]["session_id"] == "session-1" and discord.resumes[-1]["seq"] >= 1
    discord.message(channel_id=3004, user_id=7001, content="after resume")
    assert until(lambda: discord.replies_in(3004), "a reply after resume") == ["echo: after resume"]
    assert len(discord.identifies) == identified

    discord.invalidate_session(resumable=False)
    until(lambda: len(discord.identifies) == identified + 1, "a fresh Identify", timeout=30)
    connected(api, "discord")
    discord.message(channel_id=3005, user_id=7001, content="fresh session")
    assert until(lambda: discord.replies_in(3005), "a reply after identify") == ["echo: fresh session"]


def test_discord_long_replies_are_split_at_2000_characters(api, discord):
    text = " ".join(f"Sentence number {n} says something." for n in range(150))  # ~5,000 characters
    discord.message(channel_id=3006, user_id=7001, content=text)
    pieces = until(lambda: len(got := discord.replies_in(3006)) >= 3 and got, "three pieces")
    assert all(len(piece) <= 2000 for piece in pieces)
    assert all(piece.endswith(".") for piece in pieces)  # cut after a sentence
    assert " ".join(pieces) == f"echo: {text}"


def test_a_wrong_discord_token_shows_disconnected(api, discord):
    assert api.patch("/config", {"channels_config.discord.bot_token": "wrong"}).status_code == 200
    down = until(lambda: status_is(api, "discord", "disconnected"), "disconnected")
    assert down["error"] == "Invalid bot token"
    assert api.get("/channels/discord/health").json()["healthy"] is False
    assert api.patch("/config", {"channels_config.discord.bot_token": discord.token}).status_code == 200
    connected(api, "discord")


# ---- Slack ----------------------------------------------------------------------------


def test_slack_direct_messages_and_mentions_are_answered_in_their_threads(api, slack):
    connected(api, "slack")
    envelope, ts = slack.direct_message("U0000ALICE", "hello slack")
    posted = until(lambda: slack.replies_in("D0001"), "a DM reply")
    assert posted == [{"channel": "D0001", "text": "echo: hello slack", "thread_ts": ts}]
    assert envelope in slack.acked

    envelope, ts = slack.mention("U0000ALICE", "in the channel")
    posted = until(lambda: slack.replies_in("C0001"), "a mention reply")
    assert posted == [{"channel": "C0001", "text": "echo: in the channel", "thread_ts": ts}]
    ignored, _ = slack.direct_message("U0000EVE", "let me in", channel="D0002")
    until(lambda: ignored in slack.acked, "every envelope acknowledged, even ignored ones")
    time.sleep(1)
    assert slack.replies_in("D0002") == []
    with connection():
        assert AgentSession.select().where(AgentSession.channel == "slack").count() == 2  # one per chat


def test_slack_disconnect_requests_reconnect_and_latency_is_auth_test(api, slack):
    opened = slack.opened_urls
    slack.ask_to_reconnect()
    until(lambda: slack.opened_urls > opened, "a fresh apps.connections.open")
    connected(api, "slack")
    slack.direct_message("U0000ALICE", "still here")
    until(lambda: len(slack.replies_in("D0001")) == 2, "a reply after reconnecting")
    slack.delays["/auth.test"] = 0.3
    try:
        body = api.get("/channels/slack/health").json()
    finally:
        slack.delays.pop("/auth.test")
    assert body["healthy"] is True and 300 <= body["latency_ms"] < 2000


def test_a_wrong_slack_app_token_shows_disconnected(api, slack):
    assert api.patch("/config", {"channels_config.slack.app_token": "xapp-wrong"}).status_code == 200
    down = until(lambda: status_is(api, "slack", "disconnected"), "disconnected")
    assert down["error"] == "Invalid app token"
    assert api.patch("/config", {"channels_config.slack.app_token": slack.app_token}).status_code == 200
    connected(api, "slack")


# ---- the webhook channel ------------------------------------------------------------


def post(server, body: dict, message_id=None, secret=SECRET, timestamp=None, raw=None):
    data = raw if raw is not None else json.dumps(body)
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    headers = {"Content-Type": "application/json",
               **signing.headers(secret, message_id, timestamp or int(time.time()), data)}
    return requests.post(f"{server.url}/api/v1/channels/webhook/messages", data=data.encode(), headers=headers,
                         timeout=30)


def test_a_signed_webhook_message_is_answered_in_the_response(api, server):
    connected(api, "webhook")
    answer = post(server, {"user_id": "alice", "content": "hello webhook"}, message_id="msg_first")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["reply"] == "echo: hello webhook" and body["status"] == "answered"
    assert body["session_id"].startswith("sess_")
    again = post(server, {"user_id": "alice", "content": "hello webhook"}, message_id="msg_first")
    assert again.json() == body  # a sender's retry gets the same answer, not a second turn
    with connection():
        assert AgentSession.get_by_id(body["session_id"]).turn_count == 1
    follow_up = post(server, {"user_id": "alice", "content": "more"}).json()
    assert follow_up["session_id"] == body["session_id"] and follow_up["reply"] == "echo: more"


def test_webhook_messages_need_a_valid_recent_signature_and_a_good_body(server):
    good = {"user_id": "alice", "content": "x"}
    assert post(server, good, secret=signing.generate_secret()).status_code == 401
    assert post(server, good, timestamp=int(time.time()) - 3600).status_code == 401
    unsigned = requests.post(f"{server.url}/api/v1/channels/webhook/messages", json=good, timeout=10)
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "unauthorized"
    bad = post(server, {"user_id": "alice"})
    assert bad.status_code == 400 and "content" in bad.json()["error"]["details"]
    assert post(server, {}, raw="[1, 2]").status_code == 400
    assert post(server, {"user_id": "alice", "content": "x", "extra": 1}).status_code == 400
    assert post(server, {"user_id": "mallory", "content": "x"}).status_code == 403
    assert post(server, {"user_id": "alice", "content": "x", "reply_url": "ftp://x"}).status_code == 400
    other = requests.post(f"{server.url}/api/v1/channels/discord/messages", json=good, timeout=10)
    assert other.status_code == 404


def test_a_webhook_reply_url_gets_the_reply_signed(server, receiver):
    url, got = receiver
    answer = post(server, {"user_id": "bob", "content": "call me back", "reply_url": url}, message_id="msg_cb")
    assert answer.status_code == 202 and answer.json()["status"] == "accepted"
    headers, body = until(lambda: got and got[0], "the reply POSTed")
    payload = Webhook(SECRET).verify(body, {k.lower(): v for k, v in headers.items()})
    assert payload["content"] == "echo: call me back" and payload["in_reply_to"] == "msg_cb"
    assert payload["user_id"] == "bob"


def test_every_channel_is_listed_with_its_sessions_and_status_counts_them(api):
    listed = {found["name"]: found for found in api.get("/channels").json()["channels"]}
    assert list(listed) == ["api", "discord", "slack", "webhook"]
    assert {name: found["status"] for name, found in listed.items()} == dict.fromkeys(listed, "connected")
    assert listed["discord"]["active_sessions"] >= 4 and listed["slack"]["active_sessions"] == 2
    assert api.get("/status").json()["channels"] == {"connected": 4, "total": 4}


def test_a_channel_added_or_disabled_through_the_config_api_follows_without_a_restart(api, server):
    secret = signing.generate_secret()
    added = api.patch("/config", {"channels_config.forms.type": "webhook", "channels_config.forms.secret": secret})
    assert added.status_code == 200
    connected(api, "forms")
    answer = requests.post(f"{server.url}/api/v1/channels/forms/messages", data=b'{"user_id":"u","content":"hi"}',
                           headers={"Content-Type": "application/json",
                                    **signing.headers(secret, "msg_forms", int(time.time()),
                                                      '{"user_id":"u","content":"hi"}')}, timeout=30)
    assert answer.status_code == 200 and answer.json()["reply"] == "echo: hi"
    assert api.patch("/config", {"channels_config.forms.enabled": False}).status_code == 200
    until(lambda: status_is(api, "forms", "disabled"), "disabled")
    assert api.get("/status").json()["channels"] == {"connected": 4, "total": 5}
