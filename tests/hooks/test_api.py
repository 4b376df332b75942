import json
from pathlib import Path

import pytest

from app.hooks import catalogue

HOOK_FIELDS = {"id", "url", "events", "active", "created_at", "updated_at", "disabled_reason",
               "consecutive_failures"}


def create(client, auth, **body):
    body.setdefault("url", "http://127.0.0.1:9/hook")
    body.setdefault("events", ["session.created"])
    return client.post("/api/v1/hooks", json=body, headers=auth("write"))


def assert_bad_request(response, field):
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert error["code"] == "bad_request"
    assert field in error["details"], error
    return error["details"][field]


def test_create_returns_201_with_a_generated_secret_once(client, auth):
    response = create(client, auth, events=["session.created", "message.received"])
    assert response.status_code == 201
    body = response.json
    assert set(body) == HOOK_FIELDS | {"secret"}
    assert body["id"].startswith("hook_")
    assert body["url"] == "http://127.0.0.1:9/hook"
    assert body["events"] == ["session.created", "message.received"]
    assert body["active"] is True
    assert body["created_at"].endswith("Z")
    assert body["secret"].startswith("whsec_")

    listed = client.get("/api/v1/hooks", headers=auth("read")).json["hooks"]
    assert [hook["id"] for hook in listed] == [body["id"]]
    one = client.get(f"/api/v1/hooks/{body['id']}", headers=auth("read"))
    for answer in (listed[0], one.json):
        assert set(answer) == HOOK_FIELDS
        assert body["secret"] not in json.dumps(answer)


def test_a_supplied_secret_is_kept_and_never_echoed(client, auth, app):
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    response = create(client, auth, secret=secret)
    assert response.status_code == 201
    assert "secret" not in response.json
    from app.core.db import connection
    from app.hooks.models import Hook

    with connection():
        assert Hook.get_by_id(response.json["id"]).secret == secret


def test_wildcard_and_duplicates_are_normalised(client, auth):
    assert create(client, auth, events=["config.updated", "*"]).json["events"] == ["*"]
    assert create(client, auth, events=["config.updated", "config.updated"]).json["events"] == ["config.updated"]


@pytest.mark.parametrize("body, field, message", [
    ({"url": "ftp://example.com/x"}, "url", "http"),
    ({"url": "not a url"}, "url", "spaces"),
    ({"url": 5}, "url", "string"),
    ({"events": []}, "events", "at least one"),
    ({"events": ["session.created", "nope.nope"]}, "events", "unknown events: nope.nope"),
    ({"events": "session.created"}, "events", "list"),
    ({"events": ["ping"]}, "events", "unknown events: ping"),
    ({"secret": "plain"}, "secret", "whsec_"),
    ({"secret": "whsec_c2hvcnQ="}, "secret", "24 to 64 bytes"),
    ({"extra": 1}, "extra", "Unknown"),
])
def test_invalid_registrations_are_400_with_details(client, auth, body, field, message):
    details = assert_bad_request(create(client, auth, **body), field)
    assert message in json.dumps(details)


def test_missing_fields_and_bad_json_are_400(client, auth):
    response = client.post("/api/v1/hooks", json={}, headers=auth("write"))
    assert_bad_request(response, "url")
    assert response.json["error"]["details"]["events"] == ["Missing data for required field."]
    response = client.post("/api/v1/hooks", data="{", content_type="application/json", headers=auth("write"))
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_request"
    response = client.post("/api/v1/hooks", json=["x"], headers=auth("write"))
    assert response.status_code == 400 and response.json["error"]["code"] == "bad_request"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://10.0.0.5/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://2130706433/hook",  # 127.0.0.1 as one decimal number
])
def test_private_targets_are_refused_when_not_allowed(app_factory, auth, url):
    client = app_factory({"hooks": {"allow_private_targets": False}}).test_client()
    details = assert_bad_request(create(client, auth, url=url), "url")
    assert "allow_private_targets" in details[0]
    assert client.get("/api/v1/hooks", headers=auth("read")).json["hooks"] == []


def test_public_literal_addresses_are_accepted_when_private_ones_are_not(app_factory, auth):
    client = app_factory({"hooks": {"allow_private_targets": False}}).test_client()
    assert create(client, auth, url="https://93.184.215.14/hook").status_code == 201


def test_unresolvable_hosts_are_refused_when_targets_are_checked(app_factory, auth):
    client = app_factory({"hooks": {"allow_private_targets": False}}).test_client()
    details = assert_bad_request(create(client, auth, url="https://no-such-host.invalid/hook"), "url")
    assert "cannot resolve" in details[0]


def test_patch_changes_fields_and_rotates_the_secret(client, auth):
    hook = create(client, auth).json
    url = f"/api/v1/hooks/{hook['id']}"
    response = client.patch(url, json={"url": "https://93.184.215.14/new", "events": ["config.updated"]},
                            headers=auth("write"))
    assert response.status_code == 200
    assert response.json["url"] == "https://93.184.215.14/new"
    assert response.json["events"] == ["config.updated"]
    assert "secret" not in response.json
    assert response.json["updated_at"] >= hook["updated_at"]

    rotated = client.patch(url, json={"rotate_secret": True}, headers=auth("write")).json
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != hook["secret"]
    after = client.get(url, headers=auth("read")).json
    assert "secret" not in after

    supplied = "whsec_" + "QUJD" * 8
    response = client.patch(url, json={"secret": supplied}, headers=auth("write"))
    assert response.status_code == 200 and "secret" not in response.json

    response = client.patch(url, json={"active": False}, headers=auth("write"))
    assert response.json["active"] is False


def test_patch_validation(app_factory, client, auth):
    hook = create(client, auth).json
    url = f"/api/v1/hooks/{hook['id']}"
    assert_bad_request(client.patch(url, json={}, headers=auth("write")), "_schema")
    assert_bad_request(client.patch(url, json={"events": ["bogus"]}, headers=auth("write")), "events")
    assert_bad_request(client.patch(url, json={"active": "maybe"}, headers=auth("write")), "active")
    assert_bad_request(client.patch(url, json={"secret": "whsec_" + "QUJD" * 8, "rotate_secret": True},
                                    headers=auth("write")), "rotate_secret")
    strict = app_factory({"hooks": {"allow_private_targets": False}}).test_client()
    assert_bad_request(strict.patch(url, json={"url": "http://192.168.0.1/"}, headers=auth("write")), "url")
    assert client.get(url, headers=auth("read")).json["url"] == hook["url"]


def test_delete_is_204_and_then_404(client, auth):
    from app.core.db import connection
    from app.hooks.models import HookAttempt, HookDelivery

    hook = create(client, auth).json
    url = f"/api/v1/hooks/{hook['id']}"
    ping = client.post(f"{url}/test", headers=auth("write")).json
    with connection():
        HookAttempt.create(delivery=ping["id"], number=1, started_at=HookDelivery.get_by_id(ping["id"]).created_at,
                           duration_ms=1, outcome="retrying")
    response = client.delete(url, headers=auth("write"))
    assert response.status_code == 204 and response.data == b""
    with connection():  # its deliveries and their attempts went with it
        assert HookDelivery.select().count() == 0 and HookAttempt.select().count() == 0
    for method in ("get", "patch", "delete"):
        kwargs = {"json": {"active": True}} if method == "patch" else {}
        response = getattr(client, method)(url, headers=auth("write"), **kwargs)
        assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
    assert client.get(f"{url}/deliveries", headers=auth("read")).status_code == 404
    assert client.post(f"{url}/test", headers=auth("write")).status_code == 404


def test_scopes_read_for_get_write_for_changes(client, auth):
    assert client.get("/api/v1/hooks").status_code == 401
    assert client.get("/api/v1/hooks", headers=auth("read")).status_code == 200
    response = client.post("/api/v1/hooks", json={"url": "http://127.0.0.1/", "events": ["*"]}, headers=auth("read"))
    assert response.status_code == 403 and response.json["error"]["details"] == {"required_scope": "write"}
    hook = create(client, auth).json
    for method, path in (("patch", ""), ("delete", ""), ("post", "/test")):
        response = getattr(client, method)(f"/api/v1/hooks/{hook['id']}{path}", json={"active": False},
                                           headers=auth("read"))
        assert response.status_code == 403, (method, path)


def test_test_event_queues_a_ping(client, auth, deliveries):
    hook = create(client, auth).json
    response = client.post(f"/api/v1/hooks/{hook['id']}/test", headers=auth("write"))
    assert response.status_code == 202
    assert response.json["event"] == "ping" and response.json["status"] == "pending"
    assert response.json["id"].startswith("dlv_")
    assert [d["id"] for d in deliveries(hook["id"])] == [response.json["id"]]


def test_inactive_hooks_take_no_test_or_retry(client, auth):
    hook = create(client, auth).json
    ping = client.post(f"/api/v1/hooks/{hook['id']}/test", headers=auth("write")).json
    client.patch(f"/api/v1/hooks/{hook['id']}", json={"active": False}, headers=auth("write"))
    assert client.post(f"/api/v1/hooks/{hook['id']}/test", headers=auth("write")).status_code == 409
    retry = client.post(f"/api/v1/hooks/{hook['id']}/deliveries/{ping['id']}/retry", headers=auth("write"))
    assert retry.status_code == 409 and retry.json["error"]["code"] == "conflict"


def test_retry_of_unknown_delivery_is_404(client, auth):
    hook = create(client, auth).json
    other = create(client, auth).json
    ping = client.post(f"/api/v1/hooks/{other['id']}/test", headers=auth("write")).json
    for delivery_id in ("dlv_nope", ping["id"]):  # another hook's delivery is not found through this one
        response = client.post(f"/api/v1/hooks/{hook['id']}/deliveries/{delivery_id}/retry", headers=auth("write"))
        assert response.status_code == 404


def test_deliveries_query_is_validated(client, auth):
    hook = create(client, auth).json
    url = f"/api/v1/hooks/{hook['id']}/deliveries"
    assert_bad_request(client.get(url, query_string={"limit": 0}, headers=auth("read")), "limit")
    assert_bad_request(client.get(url, query_string={"limit": "x"}, headers=auth("read")), "limit")
    assert_bad_request(client.get(url, query_string={"status": "lost"}, headers=auth("read")), "status")


def test_openapi_documents_the_hooks_routes(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert {"/api/v1/hooks", "/api/v1/hooks/{hook_id}", "/api/v1/hooks/{hook_id}/deliveries",
            "/api/v1/hooks/{hook_id}/test", "/api/v1/hooks/{hook_id}/deliveries/{delivery_id}/retry"} <= set(paths)
    assert set(paths["/api/v1/hooks/{hook_id}"]) >= {"get", "patch", "delete"}


def test_catalogue_lists_the_documented_events():
    document = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text(encoding="utf-8")
    for name in [*catalogue.EVENTS, catalogue.PING]:
        assert f"`{name}`" in document, name
