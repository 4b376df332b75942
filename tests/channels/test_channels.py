"""The channels area in one process: configuration, reply splitting, backoff, signatures, the API, intake."""

import json
import time
from datetime import timedelta

import pytest

from app.channels import config as channel_config
from app.channels import dispatch, service
from app.channels.connection import Backoff, Connection
from app.channels.connectors import Inbound, split
from app.channels.models import CONNECTED, ChannelMessage, ChannelState
from app.core.auth import create_token
from app.core.db import connection, transaction, utcnow
from app.core.errors import Unauthorized
from app.core.models import Event, Job
from app.core.supervisor import Supervisor
from app.hooks import signing
from tests.channels.fakes.telegram import FakeTelegram
from tests.support.wait import wait_until

TELEGRAM = {"bot_token": "123:abc", "api_url": "http://127.0.0.1:9", "allowed_users": ["42", "@ann"]}


# ---- splitting replies ------------------------------------------------------------


def test_short_text_is_one_piece():
    assert split("hello", 4096) == ["hello"]
    assert split("", 10) == [""]


def test_long_text_is_cut_at_paragraphs_then_sentences_then_words():
    paragraphs = ["a" * 60, "b" * 60, "c" * 60]
    assert split("\n\n".join(paragraphs), 130) == ["a" * 60 + "\n\n" + "b" * 60, "c" * 60]
    sentences = "First one here. Second one here. Third one here."
    assert split(sentences, 35) == ["First one here. Second one here.", "Third one here."]
    assert split("word " * 10, 12) == ["word word", "word word", "word word", "word word", "word word"]
    assert split("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]  # nowhere to cut: at the limit


def test_every_piece_fits_and_nothing_is_lost():
    text = " ".join(f"Sentence {n} is here." for n in range(2000))
    pieces = split(text, 4096)
    assert all(len(piece) <= 4096 for piece in pieces) and len(pieces) > 1
    assert " ".join(pieces) == text


# ---- backoff ------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_up_to_the_cap_then_the_breaker_opens():
    backoff = Backoff(first=1.0, cap=8.0, breaker_after=6, open_secs=300.0)
    for failures, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0)]:
        delays = [backoff.delay(failures) for _ in range(200)]
        assert base * 0.8 <= min(delays) and max(delays) <= base * 1.2
        assert max(delays) - min(delays) > base * 0.1  # jittered, not in lockstep
        assert not backoff.circuit_open(failures)
    assert backoff.circuit_open(6)
    assert 240 <= backoff.delay(6) <= 360
    assert 4.0 <= backoff.delay(1, asked=5.0) <= 6.0  # a platform's Retry-After is honoured...
    assert backoff.delay(1, asked=1000.0) <= 8.0 * 1.2  # ...up to the cap


# ---- configuration -------------------------------------------------------------------


def test_a_table_is_read_by_its_type():
    parsed = channel_config.parse("telegram", TELEGRAM)
    assert (parsed.type, parsed.enabled, parsed.get("poll_timeout_secs")) == ("telegram", True, 30)
    assert parsed.allows("42", None) and parsed.allows("7", "ann") and not parsed.allows("7", "bob")
    support = channel_config.parse("support", {"type": "slack", "bot_token": "xoxb-1", "app_token": "xapp-1"})
    assert support.type == "slack" and support.get("api_url") == "https://slack.com/api"
    assert not support.allows("U1", None)  # empty allowed_users: nobody
    assert channel_config.parse("webhook", {"secret": "whsec_x"}).allows("anyone", None)
    assert channel_config.parse("t", {**TELEGRAM, "type": "telegram", "allowed_users": ["*"]}).allows("1", None)


@pytest.mark.parametrize("name, table, reason", [
    ("telegram", {"api_url": "http://x"}, "channels_config.telegram.bot_token is required"),
    ("telegram", {**TELEGRAM, "botToken": "x"}, "unknown key channels_config.telegram.botToken"),
    ("telegram", {**TELEGRAM, "allowed_users": "42"}, "expected a list of ids or names"),
    ("telegram", {**TELEGRAM, "enabled": "yes"}, "expected true or false"),
    ("telegram", {**TELEGRAM, "poll_timeout_secs": 0}, "expected a positive integer"),
    ("matrix", {"token": "x"}, "unknown channel type 'matrix'"),
    ("x", 3, "must be a table"),
])
def test_a_table_its_type_cannot_use_says_why(name, table, reason):
    with pytest.raises(channel_config.InvalidChannelConfig, match=reason):
        channel_config.parse(name, table)


# ---- signatures ----------------------------------------------------------------------


def test_webhook_signatures_are_checked_like_standard_webhooks():
    secret, body, now = signing.generate_secret(), '{"user_id": "a", "content": "b"}', int(time.time())
    headers = signing.headers(secret, "msg_1", now, body)
    assert service.verify_signature(secret, headers, body.encode()) == "msg_1"
    rotated = {**headers, "webhook-signature": f"v1,bm9wZQ== {headers['webhook-signature']}"}
    assert service.verify_signature(secret, rotated, body.encode()) == "msg_1"  # any of several signatures
    for bad in [{**headers, "webhook-signature": "v1,bm9wZQ=="}, {**headers, "webhook-id": "msg_2"},
                signing.headers(secret, "msg_1", now - 600, body), {"webhook-id": "msg_1"},
                {**headers, "webhook-timestamp": "soon"}]:
        with pytest.raises(Unauthorized):
            service.verify_signature(secret, bad, body.encode())
    with pytest.raises(Unauthorized):
        service.verify_signature(secret, headers, body.encode() + b" ")


# ---- the API without connections -----------------------------------------------------


@pytest.fixture
def channels_app(app_factory):
    return app_factory({"channels_config": {
        "telegram": TELEGRAM,
        "broken": {"type": "discord"},
        "quiet": {**TELEGRAM, "type": "telegram", "enabled": False},
    }})


@pytest.fixture
def auth(channels_app):
    """Tokens made on the channels app's database (the shared ``auth`` fixture builds an app of its own)."""
    with connection():
        tokens = {scope: create_token(f"test-{scope}", [scope])[1] for scope in ("read", "write", "admin")}
    return lambda scope="admin": {"Authorization": f"Bearer {tokens[scope]}"}


def test_channels_are_listed_with_their_status_before_any_connection(channels_app, auth):
    client = channels_app.test_client()
    listed = client.get("/api/v1/channels", headers=auth("read")).json["channels"]
    assert [c["name"] for c in listed] == ["api", "broken", "quiet", "telegram"]
    by_name = {c["name"]: c for c in listed}
    assert by_name["api"]["status"] == CONNECTED and by_name["api"]["connected_at"].endswith("Z")
    assert by_name["broken"] == {"name": "broken", "type": "discord", "status": "disconnected",
                                 "connected_at": None, "active_sessions": 0, "restarts": 0,
                                 "error": "Invalid configuration: channels_config.broken.bot_token is required"}
    assert by_name["quiet"]["status"] == "disabled"
    assert by_name["telegram"]["status"] == "connecting"
    status = client.get("/api/v1/status", headers=auth("read")).json
    assert status["channels"] == {"connected": 1, "total": 4}


def test_restart_and_health_answer_404_for_unknown_channels_and_restart_needs_admin(channels_app, auth):
    client = channels_app.test_client()
    assert client.post("/api/v1/channels/nope/restart", headers=auth("admin")).status_code == 404
    assert client.post("/api/v1/channels/telegram/restart", headers=auth("write")).status_code == 403
    assert client.post("/api/v1/channels/api/restart", headers=auth("admin")).status_code == 409
    answer = client.post("/api/v1/channels/telegram/restart", headers=auth("admin"))
    assert answer.status_code == 200 and answer.json == {"name": "telegram", "status": "reconnecting"}
    with connection():
        assert Event.select().where(Event.topic == "unit.restart").count() == 1
    missing = client.get("/api/v1/channels/nope/health", headers=auth("read"))
    assert missing.status_code == 404 and missing.json["error"]["details"]["channels"][0] == "api"
    health = client.get("/api/v1/channels/telegram/health", headers=auth("read")).json
    assert health["healthy"] is False and health["latency_ms"] is None
    assert client.get("/api/v1/channels/api/health", headers=auth("read")).json["healthy"] is True


def test_a_stalled_connection_is_unhealthy():
    now = utcnow()
    row = ChannelState(name="t", status=CONNECTED, since=now, cadence_secs=10.0, last_activity_at=now)
    assert not service.stalled(row, now)
    assert not service.stalled(row, now + timedelta(seconds=29))
    assert service.stalled(row, now + timedelta(seconds=31))
    assert not service.stalled(ChannelState(name="w", status=CONNECTED, since=now, cadence_secs=None), now)


# ---- taking messages in ----------------------------------------------------------------


def test_messages_are_taken_in_once_with_the_cursor_and_their_jobs_in_one_transaction(channels_app):
    config = channel_config.parse("telegram", TELEGRAM)
    messages = [Inbound("100", "500", "42", "one"), Inbound("101", "500", "42", "two"),
                Inbound("102", "501", "42", "three")]
    with connection():
        ChannelState.create(name="telegram", status=CONNECTED, since=utcnow())
        with transaction():
            rows = dispatch.accept(config, messages, "103")
        assert [r.external_id for r in rows] == ["100", "101", "102"]
        with transaction():
            again = dispatch.accept(config, messages[1:] + [Inbound("103", "500", "42", "four")], "104")
        assert [r.external_id for r in again] == ["103"]
        assert ChannelState.get_by_id("telegram").cursor == "104"
        assert ChannelState.get_by_id("telegram").last_message_at is not None
        assert ChannelMessage.select().count() == 4
        # One waiting job per chat answers all its messages: the second batch added none.
        partitions = sorted(job.partition_key for job in Job.select().where(Job.kind == dispatch.KIND_NAME))
        assert partitions == ["telegram:500", "telegram:501"]
        # A job already running may have looked for its chat's messages already: a new message gets its own.
        Job.update(claimed_until=utcnow() + timedelta(seconds=30)).where(Job.partition_key == "telegram:500").execute()
        with transaction():
            dispatch.accept(config, [Inbound("110", "500", "42", "six")], None)
        assert Job.select().where(Job.partition_key == "telegram:500").count() == 2
        received = [json.loads(e.payload) for e in Event.select().where(Event.topic == "channel.message.received")]
        assert [e["message_id"] for e in received] == ["100", "101", "102", "103", "110"]
        assert received[0]["received_at"].endswith("Z")

        try:
            with transaction():
                dispatch.accept(config, [Inbound("104", "500", "42", "five")], "105")
                raise RuntimeError("the poller died before committing")
        except RuntimeError:
            pass
        assert ChannelState.get_by_id("telegram").cursor == "104"  # neither the message nor the cursor moved
        assert not ChannelMessage.select().where(ChannelMessage.external_id == "104").exists()


# ---- the connection loop ----------------------------------------------------------------


def test_failed_connections_back_off_and_open_the_circuit_breaker(app_factory):
    fake = FakeTelegram().start()
    port = fake.port
    fake.stop()  # nothing listens: every attempt is refused
    app = app_factory({
        "channels_config": {"telegram": {**TELEGRAM, "bot_token": fake.token, "api_url": f"http://127.0.0.1:{port}"}},
        "channels": {"reconnect_first_secs": 0.05, "reconnect_max_secs": 0.1, "circuit_after_failures": 3,
                     "circuit_open_secs": 0.3},
    })
    state = app.extensions["lockgate"]
    worker = Supervisor(owner="worker-a")
    worker.declare("channel:telegram", lambda ctx: Connection(state, "telegram", ctx).run(), singleton=True, ttl=2.0)
    worker.start(listen=False)
    try:
        def row():
            with connection():
                return ChannelState.get_or_none(ChannelState.name == "telegram")

        first = wait_until(lambda: (found := row()) and found.status == "reconnecting" and found.error and found,
                           timeout=10, message="reconnecting")
        assert "connection refused" in first.error
        opened = wait_until(lambda: (found := row()) and "circuit open" in (found.error or "") and found,
                            timeout=10, message="the breaker open")
        assert opened.status == "disconnected" and opened.failures >= 3
        assert "circuit open after 3 failed attempts" in opened.error

        fake.start()  # the platform is back: the next attempt connects and the failures start over
        back = wait_until(lambda: (found := row()) and found.status == CONNECTED and found, timeout=10,
                          message="connected")
        assert back.failures == 0 and back.error is None and back.latency_ms is not None
    finally:
        worker.stop()
        fake.stop()
    assert row().status == "reconnecting" and row().error is None  # stopped here: the next worker takes over
