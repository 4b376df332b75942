"""The request pipeline every area shares, over HTTP against real gunicorn processes with two workers:
tokens and scopes, the error envelope, and rate limits counted across workers."""

import concurrent.futures
import time
from collections import Counter

import pytest
import requests

from tests.support.databases import REDIS_URL
from tests.support.http import assert_envelope, fresh_get

pytestmark = pytest.mark.e2e

RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
# Counters live in the database's storage by default, in Redis when configured.
COUNTER_STORAGES = ["database"] + (["redis"] if REDIS_URL else [])


# ---- authentication and authorisation --------------------------------------


def test_health_and_docs_need_no_token(server):
    assert fresh_get(f"{server.url}/api/v1/status/health").json() == {"healthy": True}
    spec = fresh_get(f"{server.url}/api/v1/openapi.json").json()
    assert "/api/v1/status" in spec["paths"]
    assert fresh_get(f"{server.url}/api/v1/docs").status_code == 200


def test_missing_malformed_unknown_tokens_are_401(server):
    url = f"{server.url}/api/v1/status"
    good = server.token("read")
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer "},
                    {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Bearer {forged}"},
                    {"Authorization": f"Bearer lgt_0000000000000000_{'A' * 43}"}):
        assert_envelope(fresh_get(url, headers=headers), 401, "unauthorized")


def test_scopes(server):
    status, config = f"{server.url}/api/v1/status", f"{server.url}/api/v1/config"
    patch = {"json": {"agent.max_turns": 60}, "timeout": 10}
    assert fresh_get(status, headers=server.headers("read")).status_code == 200
    assert fresh_get(status, headers=server.headers("write")).status_code == 200
    assert fresh_get(status, headers=server.headers("admin")).status_code == 200
    error = assert_envelope(requests.patch(config, headers=server.headers("read"), **patch), 403, "forbidden")
    assert error["details"] == {"required_scope": "admin"}
    assert_envelope(requests.patch(config, headers=server.headers("write"), **patch), 403, "forbidden")
    assert requests.patch(config, headers=server.headers("admin"), **patch).status_code == 200


def test_cli_tokens_expire_and_revoke(server):
    created = server.flask("auth", "token", "--name", "ci", "--scope", "read", "--expires", "1s")
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("lgt_")
    headers = {"Authorization": f"Bearer {token}"}
    time.sleep(1.1)
    assert_envelope(fresh_get(f"{server.url}/api/v1/status", headers=headers), 401, "unauthorized")

    token = server.flask("auth", "token", "--name", "ops", "--scope", "read").stdout.strip().splitlines()[-1]
    token_id = token.split("_")[1]
    headers = {"Authorization": f"Bearer {token}"}
    assert fresh_get(f"{server.url}/api/v1/status", headers=headers).status_code == 200
    listing = server.flask("auth", "list").stdout
    assert token_id in listing and token.split("_", 2)[2] not in listing  # the secret may hold "_"
    server.flask("auth", "revoke", token_id)
    for _ in range(4):  # both workers refuse it at once
        assert_envelope(fresh_get(f"{server.url}/api/v1/status", headers=headers), 401, "unauthorized")
    assert "revoked" in server.flask("auth", "list").stdout
    assert server.flask("auth", "revoke", "nope", check=False).returncode != 0


# ---- errors -------------------------------------------------------------------


def test_error_envelopes(server):
    headers = server.headers("admin")
    assert_envelope(fresh_get(f"{server.url}/api/v1/nowhere", headers=headers), 404, "not_found")
    assert_envelope(fresh_get(f"{server.url}/elsewhere"), 404, "not_found")
    error = assert_envelope(requests.delete(f"{server.url}/api/v1/status", headers=headers), 405,
                            "method_not_allowed")
    assert "GET" in error["details"]["allowed"]
    config = f"{server.url}/api/v1/config"
    assert_envelope(requests.patch(config, data="{nope", headers={**headers, "Content-Type": "application/json"}),
                    400, "bad_request")
    assert_envelope(requests.patch(config, data="a=b", headers={**headers, "Content-Type": "text/plain"}),
                    400, "bad_request")
    error = assert_envelope(requests.patch(config, json={"agent.max_turns": "many", "x.y": 1}, headers=headers),
                            400, "bad_request")
    assert set(error["details"]) == {"agent.max_turns", "x.y"}
    error = assert_envelope(fresh_get(f"{server.url}/api/v1/logs", params={"limit": 5000}, headers=headers),
                            400, "bad_request")
    assert "limit" in error["details"]
    big = "x" * (2 * 1024 * 1024)
    assert_envelope(requests.patch(config, data=big, headers={**headers, "Content-Type": "application/json"}),
                    413, "payload_too_large")


# ---- rate limits --------------------------------------------------------------


@pytest.mark.parametrize("storage", COUNTER_STORAGES)
def test_rate_limit_is_exact_across_workers(server_factory, storage):
    config = {"rate_limits": {"default": "12/10s"}}
    if storage == "redis":
        config["redis"] = {"url": REDIS_URL}
    server = server_factory(config)
    headers = server.headers("read")
    url = f"{server.url}/api/v1/status"
    # Start early in a window so the burst falls in one window.
    time.sleep(10 - time.time() % 10 + 0.05)
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda _: fresh_get(url, headers=headers), range(36)))
    by_window = Counter()
    for response in responses:
        assert all(name in response.headers for name in RATE_HEADERS)
        if response.status_code == 200:
            by_window[response.headers["X-RateLimit-Reset"]] += 1
        else:
            error = assert_envelope(response, 429, "rate_limited")
            assert int(response.headers["Retry-After"]) >= 1
            assert error["details"]["limit"] == 12
    assert len(by_window) == 1, by_window
    assert list(by_window.values()) == [12]
    # Tokens have their own budgets; anonymous clients are counted by address.
    assert fresh_get(url, headers=server.headers("admin")).status_code == 200


def test_rate_limit_headers_on_every_response(server):
    headers = server.headers("read")
    responses = [
        fresh_get(f"{server.url}/api/v1/status", headers=headers),
        fresh_get(f"{server.url}/api/v1/status"),
        fresh_get(f"{server.url}/api/v1/nowhere", headers=headers),
        requests.post(f"{server.url}/api/v1/status", headers=headers),
        fresh_get(f"{server.url}/api/v1/status/health"),
    ]
    now = time.time()
    for response in responses:
        assert int(response.headers["X-RateLimit-Limit"]) > 0
        assert int(response.headers["X-RateLimit-Remaining"]) >= 0
        assert now - 5 < int(response.headers["X-RateLimit-Reset"]) < now + 5
    assert responses[0].headers["X-RateLimit-Limit"] == "30"


def test_sessions_and_config_write_groups(server_factory):
    server = server_factory({"rate_limits": {"config_write": "2/10s"}})
    headers = server.headers("admin")
    time.sleep(10 - time.time() % 10 + 0.05)
    codes = [requests.patch(f"{server.url}/api/v1/config", json={"memory.top_k": 3}, headers=headers).status_code
             for _ in range(4)]
    assert codes == [200, 200, 429, 429]
    assert fresh_get(f"{server.url}/api/v1/config", headers=headers).status_code == 200
