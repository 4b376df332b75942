"""Planted secrets of every shape never leave a real server: API, CLI, stored logs, stderr, error bodies."""

import json
import re
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from app.config.service import flatten
from tests.support.databases import REDIS_URL

pytestmark = pytest.mark.e2e

MARKER = "***REDACTED***"

# Where a secret is planted -> how GET /api/v1/config must show it.
CHANNELS = {
    "telegram": {"bot_token": "123456:planted-telegram-bot-token", "allowed_users": ["42"],
                 "api_url": "http://127.0.0.1:9"},
    "slack": {"app_token": "xapp-planted-slack-app-token", "bot_token": "xoxb-planted-slack-bot-token",
              "signing_key": "planted-slack-signing-key"},
    "discord": {"secret_key": "planted-discord-secret-key"},
    "s3": {"aws_secret_access_key": "planted-aws-secret-access-key", "aws_access_key_id": "AKIAPLANTEDACCESSKEY",
           "bucket": "lockgate-archive"},
    "relay": {"api_keys": ["planted-relay-api-key-one", "planted-relay-api-key-two"],
              "tokens": ["planted-relay-token-list"], "enabled": True},
    "matrix": {"credentials": {"user": "planted-matrix-credentials-user", "pin": 81726354},
               "accounts": [{"password": "planted-matrix-account-password", "user": "bot"}]},
    "teams": {"webhook_url": "https://bot:planted-teams-webhook-password@teams.example.test/hook",
              "display_name": "Ops bot"},
    "sentry": {"dsn": "https://planted-sentry-dsn-key@o1.ingest.example.test/5"},
    "email": {"smtp_url": "smtp://mailer:planted-smtp-url-password@mail.example.test:587"},
    "feed": {"callback_url": "https://feed.example.test/cb?token=planted-callback-query-token&page=2",
             "signed_url": "https://cdn.example.test/o?X-Amz-Signature=planted-query-signature&X-Amz-Expires=60",
             "public_url": "https://feed.example.test/public?page=2"},
    "irc": {"passwd": "planted-irc-passwd"},
    "oauth": {"client_secret": "planted-oauth-client-secret", "private_key_pem": "planted-oauth-private-key-pem",
              "auth_header": "Bearer planted-oauth-auth-header"},
    "warehouse": {"connection": "host=db.example.test user=etl password=planted-keyword-dsn-password"},
}
SHOWN_CHANNELS = {
    "telegram": {"bot_token": MARKER, "allowed_users": ["42"], "api_url": "http://127.0.0.1:9"},
    "slack": {"app_token": MARKER, "bot_token": MARKER, "signing_key": MARKER},
    "discord": {"secret_key": MARKER},
    "s3": {"aws_secret_access_key": MARKER, "aws_access_key_id": MARKER, "bucket": "lockgate-archive"},
    "relay": {"api_keys": [MARKER, MARKER], "tokens": [MARKER], "enabled": True},
    "matrix": {"credentials": {"user": MARKER, "pin": MARKER}, "accounts": [{"password": MARKER, "user": "bot"}]},
    "teams": {"webhook_url": f"https://bot:{MARKER}@teams.example.test/hook", "display_name": "Ops bot"},
    "sentry": {"dsn": MARKER},
    "email": {"smtp_url": f"smtp://mailer:{MARKER}@mail.example.test:587"},
    "feed": {"callback_url": f"https://feed.example.test/cb?token={MARKER}&page=2",
             "signed_url": f"https://cdn.example.test/o?X-Amz-Signature={MARKER}&X-Amz-Expires=60",
             "public_url": "https://feed.example.test/public?page=2"},
    "irc": {"passwd": MARKER},
    "oauth": {"client_secret": MARKER, "private_key_pem": MARKER, "auth_header": MARKER},
    "warehouse": {"connection": f"host=db.example.test user=etl password={MARKER}"},
}
PROVIDER_KEY = "sk-planted-provider-api-key"
HOOK_TOKEN, HOOK_SIGNATURE = "planted-hook-query-token", "planted-hook-query-signature"
ERROR_PASSWORD, ERROR_TOKEN = "planted-error-url-password", "planted-error-query-token"
DATABASE_PASSWORD, REDIS_PASSWORD = "planted-database-url-password", "planted-redis-url-password"
PATCHED_PASSWORD = "planted-patched-database-password"
NOT_SECRET = {"agent": {"max_tool_calls_per_turn": 7}, "memory": {"top_k": 9}, "auth": {"default_token_expiry_days": 3}}


def with_password(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


def planted_strings(backend: str) -> list[str]:
    """Every planted secret, as the text that must never be seen outside the config file."""
    found = re.findall(r"planted[\w-]*", json.dumps(CHANNELS), re.IGNORECASE) + ["81726354"]
    found += [PROVIDER_KEY, HOOK_TOKEN, HOOK_SIGNATURE, ERROR_PASSWORD, ERROR_TOKEN, PATCHED_PASSWORD]
    if backend == "postgresql":
        found.append(DATABASE_PASSWORD)
    if REDIS_URL:
        found.append(REDIS_PASSWORD)
    return found


def fresh_get(url, **kwargs):
    return requests.get(url, headers={"Connection": "close", **kwargs.pop("headers", {})}, timeout=10, **kwargs)


@pytest.fixture
def planted_server(server_factory, backend):
    """A server whose configuration holds every planted secret; real URLs carry a planted password."""
    config = {
        "provider": {"api_key": PROVIDER_KEY, "max_tokens": 777, "base_url": "http://127.0.0.1:9/v1"},
        "channels_config": CHANNELS,
        "hooks": {"allow_private_targets": True},
        "rate_limits": {"config_write": "1000/s"},
        **NOT_SECRET,
    }
    if REDIS_URL:
        config["redis"] = {"url": with_password(REDIS_URL, "default", REDIS_PASSWORD)}
    server = server_factory(config)
    if backend == "postgresql":
        # The test PostgreSQL trusts loopback: the password is sent, not needed. Applied at the next start.
        url = with_password(server.database_url, "postgres", DATABASE_PASSWORD)
        text = server.config_path.read_text().replace(server.database_url, url)
        assert url in text
        server.config_path.write_text(text)
    return server


def test_no_planted_secret_leaves_the_server(planted_server, backend):
    server = planted_server
    planted = planted_strings(backend)
    assert len(planted) >= 25
    text = server.config_path.read_text()
    assert all(secret in text for secret in planted if secret not in (
        HOOK_TOKEN, HOOK_SIGNATURE, ERROR_PASSWORD, ERROR_TOKEN, PATCHED_PASSWORD))
    seen = []

    # The API, with a read token.
    config = fresh_get(f"{server.url}/api/v1/config", headers=server.headers("read")).json()
    seen.append(json.dumps(config))
    assert config["channels_config"] == SHOWN_CHANNELS
    assert config["provider"]["api_key"] == MARKER
    assert config["provider"]["max_tokens"] == 777 and config["provider"]["base_url"] == "http://127.0.0.1:9/v1"
    assert {section: {key: config[section][key] for key in keys} for section, keys in NOT_SECRET.items()} == NOT_SECRET
    if backend == "postgresql":
        assert f"postgres:{MARKER}@127.0.0.1" in config["database"]["url"]
    else:
        assert config["database"]["url"] == server.database_url  # a URL without password shows whole
    if REDIS_URL:
        assert f"default:{MARKER}@" in config["redis"]["url"]

    # The CLI shows what the API shows.
    shown = server.flask("config", "show")
    seen += [shown.stdout, shown.stderr]
    assert json.loads(shown.stdout.split("\n", 1)[1]) == config

    # A log line naming a URL with credentials in its query.
    hook_url = f"http://127.0.0.1:9/in?token={HOOK_TOKEN}&sig={HOOK_SIGNATURE}&v=1"
    hook = requests.post(f"{server.url}/api/v1/hooks", json={"url": hook_url, "events": ["session.created"]},
                         headers=server.headers("admin"), timeout=10)
    assert hook.status_code == 201, hook.text
    line = wait_for_log(server, hook.json()["id"])
    assert line["message"].endswith(f"http://127.0.0.1:9/in?token={MARKER}&sig={MARKER}&v=1")
    seen.append(json.dumps(fresh_get(f"{server.url}/api/v1/logs", headers=server.headers("read"),
                                     params={"level": "trace", "limit": 1000}).json()))

    # Error bodies that quote what was sent.
    leaky_url = f"https://ops:{ERROR_PASSWORD}@h.example.test/x?token={ERROR_TOKEN}"
    for response in (
        requests.patch(f"{server.url}/api/v1/config", json={"hooks.retry_schedule": ["5s", leaky_url]},
                       headers=server.headers("admin"), timeout=10),
        requests.patch(f"{server.url}/api/v1/config", json={"rate_limits.default": leaky_url},
                       headers=server.headers("admin"), timeout=10),
        fresh_get(f"{server.url}/api/v1/logs", headers=server.headers("read"), params={"since": leaky_url}),
        requests.patch(f"{server.url}/api/v1/config", headers=server.headers("admin"), timeout=10,
                       json={"channels_config.teams.webhook_url": f"https://other:{MARKER}@teams.example.test/hook"}),
    ):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "bad_request"
        seen.append(response.text)

    # The config sent back as shown changes no secret: masked values are not even written.
    channels = {name: {key: value for key, value in table.items() if key != "accounts"}
                for name, table in config["channels_config"].items()}
    sent = flatten({"channels_config": channels, "provider": {"api_key": MARKER},
                    "database": config["database"], "redis": config["redis"]})
    echoed = requests.patch(f"{server.url}/api/v1/config", json=sent, headers=server.headers("admin"), timeout=10)
    assert echoed.status_code == 200, echoed.text
    assert echoed.json()["updated"] == sorted(key for key, value in sent.items() if MARKER not in str(value))
    after = server.config_path.read_text()
    assert all(secret in after for secret in planted if secret in text)

    # A new database URL: its password hidden at once; sent back masked with a new host, the password stays.
    patched = requests.patch(f"{server.url}/api/v1/config", headers=server.headers("admin"), timeout=10,
                             json={"database.url": f"postgresql://lockgate:{PATCHED_PASSWORD}@127.0.0.1:1/next"})
    assert patched.json() == {"updated": ["database.url"], "reload_required": True}
    config = fresh_get(f"{server.url}/api/v1/config", headers=server.headers("read")).json()
    assert config["database"]["url"] == f"postgresql://lockgate:{MARKER}@127.0.0.1:1/next"
    seen += [patched.text, json.dumps(config)]
    moved = requests.patch(f"{server.url}/api/v1/config", headers=server.headers("admin"), timeout=10,
                           json={"database.url": f"postgresql://lockgate:{MARKER}@127.0.0.1:2/next"})
    assert moved.json()["updated"] == ["database.url"], moved.text
    assert f"postgresql://lockgate:{PATCHED_PASSWORD}@127.0.0.1:2/next" in server.config_path.read_text()

    # stderr of every process (gunicorn's log) too.
    seen.append(server.log())
    everything = "\n".join(seen)
    leaked = [secret for secret in planted if secret in everything]
    assert leaked == []
    assert MARKER in everything


def wait_for_log(server, needle: str, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = fresh_get(f"{server.url}/api/v1/logs", headers=server.headers("read"),
                            params={"module": "hooks", "level": "info"}).json()["entries"]
        found = [entry for entry in entries if needle in entry["message"]]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no log line mentioning {needle} within {timeout}s")
