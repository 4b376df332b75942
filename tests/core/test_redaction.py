"""Secrets hidden by what they are: the rules, PATCH round trips, log records, and the app in process."""

import json
import logging

import pytest

from app.core import redaction
from app.core.logging import DatabaseHandler, SecretsFilter
from app.core.redaction import MARKER, mask_text
from app.core.settings import Settings, check_patch, is_secret_key, redact
from tests.support.config import write_config


@pytest.mark.parametrize("text,expected", [
    ("postgresql://user:hunter2@db/lockgate", f"postgresql://user:{MARKER}@db/lockgate"),
    ("redis://:s3cret@127.0.0.1:6379/0", f"redis://:{MARKER}@127.0.0.1:6379/0"),
    ("https://bot:p@ss@host.test/x", f"https://bot:{MARKER}@host.test/x"),
    ("failed: https://h.test/hook?token=abc&page=2", f"failed: https://h.test/hook?token={MARKER}&page=2"),
    ("url: /hook?a=1&api_key=zz#top", f"url: /hook?a=1&api_key={MARKER}#top"),
    ("https://s3.test/o?X-Amz-Signature=f00d&X-Amz-Credential=AK/1", f"https://s3.test/o?X-Amz-Signature={MARKER}"
                                                                     f"&X-Amz-Credential={MARKER}"),
    ("'https://h.test/?access_token=tok'", f"'https://h.test/?access_token={MARKER}'"),
    ("host=db user=u password=pw", f"host=db user=u password={MARKER}"),
    # Nothing to hide: these come back unchanged.
    ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"),
    ("http://127.0.0.1:8080/path?page=2&q=x", "http://127.0.0.1:8080/path?page=2&q=x"),
    ("Answer with ?key=value pairs", "Answer with ?key=value pairs"),
    ("sqlite:////var/lib/lockgate/lockgate.db", "sqlite:////var/lib/lockgate/lockgate.db"),
])
def test_mask_text(text, expected):
    assert mask_text(text) == expected
    assert mask_text(expected) == expected  # masking twice changes nothing


@pytest.mark.parametrize("dotted,secret", [
    ("provider.api_key", True),
    ("database.url", True),
    ("redis.url", True),
    # Known keys are what the schema says, whatever their names contain.
    ("provider.max_tokens", False),
    ("agent.max_tool_calls_per_turn", False),
    ("auth.default_token_expiry_days", False),
    ("memory.top_k", False),
    ("provider.base_url", False),
    # Free-form keys: by name, and everything under a table so named.
    ("channels_config.slack.bot_token", True),
    ("channels_config.slack.app_token", True),
    ("channels_config.slack.signing_key", True),
    ("channels_config.s3.aws_secret_access_key", True),
    ("channels_config.relay.api_keys", True),
    ("channels_config.irc.passwd", True),
    ("channels_config.sentry.dsn", True),
    ("channels_config.x.credentials.user", True),
    ("channels_config.x.private_key_pem", True),
    ("channels_config.x.auth_header", True),
    ("channels_config.telegram.allowed_users", False),
    ("channels_config.teams.webhook_url", False),
])
def test_is_secret_key(dotted, secret):
    assert is_secret_key(dotted) is secret


def test_redact_by_schema_name_and_shape():
    data = {
        "provider": {"api_key": "sk-live-1", "max_tokens": 10, "base_url": "https://api.test/v1"},
        "database": {"url": "postgresql://lockgate:db-pass-2@db.test/lockgate"},
        "redis": {"url": "redis://default:redis-pass-3@cache.test:6379/0"},
        "auth": {"default_token_expiry_days": 3},
        "channels_config": {
            "telegram": {"bot_token": "123:tg-4", "allowed_users": ["1"]},
            "matrix": {"accounts": [{"password": "matrix-5", "user": "bot"}],
                       "credentials": {"user": "matrix-user-6", "pin": 7777}},
            "relay": {"api_keys": ["relay-8", "relay-9"], "tokens": ["relay-10"], "enabled": True},
            "teams": {"webhook_url": "https://bot:teams-11@teams.test/hook?sig=teams-12&v=1",
                      "display_name": "Ops"},
            "sentry": {"dsn": "https://sentry-13@ingest.test/5"},
        },
    }
    shown = redact(data)
    assert shown["provider"] == {"api_key": MARKER, "max_tokens": 10, "base_url": "https://api.test/v1"}
    assert shown["database"]["url"] == f"postgresql://lockgate:{MARKER}@db.test/lockgate"
    assert shown["redis"]["url"] == f"redis://default:{MARKER}@cache.test:6379/0"
    assert shown["auth"] == {"default_token_expiry_days": 3}
    channels = shown["channels_config"]
    assert channels["telegram"] == {"bot_token": MARKER, "allowed_users": ["1"]}
    assert channels["matrix"] == {"accounts": [{"password": MARKER, "user": "bot"}],
                                  "credentials": {"user": MARKER, "pin": MARKER}}
    assert channels["relay"] == {"api_keys": [MARKER, MARKER], "tokens": [MARKER], "enabled": True}
    assert channels["teams"] == {"webhook_url": f"https://bot:{MARKER}@teams.test/hook?sig={MARKER}&v=1",
                                 "display_name": "Ops"}
    assert channels["sentry"] == {"dsn": MARKER}  # a name that says secret hides all of the value
    text = json.dumps(shown)
    for planted in ("sk-live-1", "db-pass-2", "redis-pass-3", "tg-4", "matrix-5", "matrix-user-6", "7777",
                    "relay-8", "relay-9", "relay-10", "teams-11", "teams-12", "sentry-13"):
        assert planted not in text
    assert data["provider"]["api_key"] == "sk-live-1"  # the original is untouched


def test_a_secret_url_without_password_shows_whole():
    shown = redact({"database": {"url": "postgresql://postgres@127.0.0.1:5432/test"}, "redis": {"url": ""}})
    assert shown == {"database": {"url": "postgresql://postgres@127.0.0.1:5432/test"}, "redis": {"url": ""}}


def test_scrub_removes_sent_values_and_masks_urls():
    message = "cannot use 'tok-123' with https://u:pw-9@h.test/x"
    assert redaction.scrub(message, ["tok-123"]) == f"cannot use '{MARKER}' with https://u:{MARKER}@h.test/x"
    # The marker and single letters sent along leave the reason readable.
    reason = f"{MARKER} stands for a stored secret"
    assert redaction.scrub(reason, [MARKER, "e", ""]) == reason


def test_a_patch_error_never_repeats_a_secret_sent(app, auth):
    sent = {"channels_config.relay.api_keys": [MARKER, "relay-key-sent-along"],
            "channels_config.relay.webhook_url": f"https://bot:{MARKER}@relay.test/in?token=query-token-sent"}
    response = app.test_client().patch("/api/v1/config", headers=auth("admin"), json=sent)
    assert response.status_code == 400
    details = response.get_json()["error"]["details"]
    assert set(details) == set(sent)
    assert "none is stored" in details["channels_config.relay.api_keys"][0]
    assert "relay-key-sent-along" not in response.get_data(as_text=True)
    assert "query-token-sent" not in response.get_data(as_text=True)


# ---- PATCH: values sent back -------------------------------------------------


@pytest.fixture
def stored(tmp_path):
    path = write_config(tmp_path / "lockgate.toml", {
        "database": {"url": "postgresql://lockgate:db-pass@db.test/lockgate"},
        "provider": {"api_key": "sk-stored"},
        "channels_config": {"relay": {"api_keys": ["key-one", "key-two"],
                                      "webhook_url": "https://bot:hook-pass@relay.test/in?token=query-tok&v=2",
                                      "credentials": {"user": "relay-user"}}},
    })
    return Settings(path)


def test_values_sent_back_as_shown_keep_the_stored_ones(stored):
    shown = redact(stored.data)
    sent = {
        "database.url": shown["database"]["url"],
        "provider.api_key": shown["provider"]["api_key"],
        "channels_config.relay.api_keys": shown["channels_config"]["relay"]["api_keys"],
        "channels_config.relay.webhook_url": shown["channels_config"]["relay"]["webhook_url"],
        "channels_config.relay.credentials.user": shown["channels_config"]["relay"]["credentials"]["user"],
    }
    assert all(MARKER in str(value) for value in sent.values())
    assert check_patch(sent, stored) == ({}, {})


def test_masked_parts_are_filled_from_the_stored_value(stored):
    to_write, errors = check_patch({
        "database.url": f"postgresql://lockgate:{MARKER}@db2.test/lockgate",
        "channels_config.relay.api_keys": [MARKER, "key-three"],
        "channels_config.relay.webhook_url": f"https://bot:{MARKER}@relay.test/v2?token={MARKER}&v=3",
    }, stored)
    assert errors == {}
    assert to_write == {
        "database.url": "postgresql://lockgate:db-pass@db2.test/lockgate",
        "channels_config.relay.api_keys": ["key-one", "key-three"],
        "channels_config.relay.webhook_url": "https://bot:hook-pass@relay.test/v2?token=query-tok&v=3",
    }


def test_a_marker_with_nothing_stored_behind_it_is_refused(stored):
    to_write, errors = check_patch({
        "database.url": f"postgresql://someone-else:{MARKER}@db.test/lockgate",  # another user: its own password
        "channels_config.relay.webhook_url": f"https://bot:hook-pass@relay.test/in?sig={MARKER}",
        "channels_config.new.webhook_url": f"https://bot:{MARKER}@new.test/in",
        "channels_config.relay.api_keys": [MARKER, MARKER, MARKER],
    }, stored)
    assert to_write == {}
    assert set(errors) == {"database.url", "channels_config.relay.webhook_url", "channels_config.new.webhook_url",
                           "channels_config.relay.api_keys"}
    assert "someone-else" in errors["database.url"][0]
    assert "sig=" in errors["channels_config.relay.webhook_url"][0]
    assert not any(secret in json.dumps(errors) for secret in ("db-pass", "hook-pass", "query-tok", "key-one"))


def test_the_plain_marker_for_a_secret_is_dropped_even_with_nothing_stored(tmp_path):
    settings = Settings(tmp_path / "absent.toml")
    assert check_patch({"provider.api_key": MARKER, "channels_config.x.bot_token": MARKER}, settings) == ({}, {})


# ---- log records ---------------------------------------------------------------


def test_log_records_are_masked_before_they_are_stored():
    handler = DatabaseHandler()
    handler.addFilter(SecretsFilter())
    logger = logging.getLogger("tests::redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("hook %s registered for %s", "hook_1", "https://h.test/in?token=log-tok-1&page=2")
        logger.warning("connecting to postgresql://lockgate:log-pass-2@db.test/x")
        try:
            raise ConnectionError("GET https://h.test/in?api_key=log-key-3 failed")
        except ConnectionError:
            logger.exception("delivery failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    messages = [entry["message"] for entry in handler._buffer]
    assert messages[0] == f"hook hook_1 registered for https://h.test/in?token={MARKER}&page=2"
    assert messages[1] == f"connecting to postgresql://lockgate:{MARKER}@db.test/x"
    assert messages[2].startswith("delivery failed\nTraceback")
    assert f"api_key={MARKER} failed" in messages[2]
    assert not any(secret in "\n".join(messages) for secret in ("log-tok-1", "log-pass-2", "log-key-3"))


# ---- the app in process: API, CLI, stored logs, error bodies ---------------------


PLANTED_URLS = {
    "database": {"url": "postgresql://lockgate:inproc-db-pass@db.invalid:5432/lockgate"},
    "redis": {"url": "redis://default:inproc-redis-pass@cache.invalid:6379/0"},
}


def test_api_cli_logs_and_errors_in_process(app, tokens, auth, tmp_path, db_url):
    state = app.extensions["lockgate"]
    # database.url and redis.url take effect at the next start: the running app keeps its database.
    write_config(state.settings.path, {
        **PLANTED_URLS,
        "provider": {"api_key": "inproc-api-key", "max_tokens": 321},
        "channels_config": {"slack": {"bot_token": "inproc-bot-token", "allowed_users": ["U1"]}},
    })
    client = app.test_client()
    body = client.get("/api/v1/config", headers=auth("read")).get_json()
    assert body["database"]["url"] == f"postgresql://lockgate:{MARKER}@db.invalid:5432/lockgate"
    assert body["redis"]["url"] == f"redis://default:{MARKER}@cache.invalid:6379/0"
    assert body["provider"]["api_key"] == MARKER and body["provider"]["max_tokens"] == 321
    assert body["channels_config"]["slack"] == {"bot_token": MARKER, "allowed_users": ["U1"]}

    shown = app.test_cli_runner().invoke(args=["config", "show"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output.split("\n", 1)[1]) == body

    error = client.patch("/api/v1/config", headers=auth("admin"),
                         json={"hooks.retry_schedule": ["5s", "https://u:inproc-error-pass@h.invalid/?token=inproc-query-token"]})
    assert error.status_code == 400
    assert error.get_json()["error"]["code"] == "bad_request"

    handler = DatabaseHandler()
    handler.addFilter(SecretsFilter())
    record = logging.LogRecord("hooks::delivery", logging.INFO, __file__, 1, "sent to %s", (
        "http://127.0.0.1:9/in?token=inproc-log-token",), None)
    handler.handle(record)
    with app.app_context():
        assert handler.flush_to_database() == 1
    logs = client.get("/api/v1/logs", headers=auth("read"), query_string={"module": "hooks"}).get_json()
    assert [entry["message"] for entry in logs["entries"]] == [f"sent to http://127.0.0.1:9/in?token={MARKER}"]

    everything = "\n".join([json.dumps(body), shown.output, error.get_data(as_text=True), json.dumps(logs)])
    for secret in ("inproc-db-pass", "inproc-redis-pass", "inproc-api-key", "inproc-bot-token",
                   "inproc-error-pass", "inproc-query-token", "inproc-log-token"):
        assert secret not in everything
