"""The Tool Review API in process, on every database: workflow, fields, errors, scopes and limits."""

from __future__ import annotations

import io
import tarfile
import time
from datetime import timedelta

import pytest

from app.core import jobs
from app.core.auth import Principal, create_token
from app.core.db import connection, transaction, utcnow
from app.review import package, service, signing, workflow
from app.review.models import ReviewSession
from tests.review.support import EVAL_TOOL, RELAXED, SHELL_TOOL, copy_keys, running_pool, submission
from tests.support.transactions import in_other_transaction
from tests.support.wait import wait_until

BASE = "/api/v1/tool-review"


@pytest.fixture
def keys(tmp_path):
    return copy_keys(tmp_path / "signing")


@pytest.fixture
def review_app(app_factory, keys):
    def build(config: dict | None = None):
        merged = {section: dict(values) for section, values in RELAXED.items()}
        merged["review"]["key_dir"] = str(keys)
        merged["review"]["reviewers"] = ["alice@example.com", "bob@example.com"]
        for section, values in (config or {}).items():
            merged.setdefault(section, {}).update(values)
        return app_factory(merged)

    return build


@pytest.fixture
def app(review_app):
    return review_app()


@pytest.fixture
def reviewer(app, tokens):
    with connection():
        return {"Authorization": f"Bearer {create_token('reviewer', ['review'])[1]}"}


def submit(client, headers, body) -> str:
    response = client.post(f"{BASE}/sessions", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["review_id"]


def session(client, headers, review_id) -> dict:
    response = client.get(f"{BASE}/sessions/{review_id}", headers=headers)
    assert response.status_code == 200
    return response.get_json()


def settled(client, headers, review_id, *statuses) -> dict:
    return wait_until(lambda: (found := session(client, headers, review_id))["state"]["type"] in statuses
                      and found, timeout=60, message=f"review {review_id} to reach {statuses}")


def test_clean_tool_is_auto_approved_and_signed(app, client, auth, keys):
    created = client.post(f"{BASE}/sessions", json=submission(), headers=auth("write"))
    assert created.status_code == 201
    body = created.get_json()
    assert body["status"] == "submitted" and body["created_at"] == body["submitted_at"]
    assert body["created_at"].endswith("Z") and len(body["review_id"]) == 36
    with running_pool(app):
        found = settled(client, auth("read"), body["review_id"], "signed")
    assert found["status"] == "signed" and found["tool_name"] == "adder" and found["tool_version"] == "1.0.0"
    assert found["analysis_results"]["risk_score"] < 30
    assert not [f for f in found["analysis_results"]["findings"] if f["severity"] in ("high", "critical")]
    assert found["decision"]["automatic"] is True and found["language"] == "python"

    analysis = client.get(f"{BASE}/analysis/{found['analysis_id']}", headers=auth("read")).get_json()
    assert analysis["analysis_type"] == "automated" and analysis["review_id"] == body["review_id"]
    assert analysis["completed_at"].endswith("Z")

    signing_info = client.get(f"{BASE}/signing/{body['review_id']}", headers=auth("read")).get_json()
    assert signing_info["signing_status"] == "completed"
    info = signing_info["signature_info"]
    assert info["algorithm"] == "RSA-SHA256" and info["key_id"] == signing.current_key_id(keys)
    assert len(signing_info["certificate_chain"]) == 2
    assert all("PRIVATE" not in pem for pem in signing_info["certificate_chain"])

    download = client.get(f"{BASE}/signing/{body['review_id']}/download", headers=auth("read"))
    assert download.status_code == 200 and download.mimetype == "application/x-tar"
    manifest = package.verify(download.data, signing.trusted_roots(keys))
    assert manifest["review"]["review_id"] == body["review_id"] and manifest["review"]["decision"] == "approve"
    assert manifest["key_id"] == info["key_id"] and manifest["tool"]["name"] == "adder"
    with tarfile.open(fileobj=io.BytesIO(download.data)) as tar:
        assert tar.extractfile("source/tool.py").read().decode() == submission()["source_code"]


@pytest.mark.parametrize("source", [SHELL_TOOL, EVAL_TOOL], ids=["shell", "eval"])
def test_risky_tool_waits_for_a_reviewer_then_is_signed(app, client, auth, reviewer, source):
    review_id = submit(client, auth("write"), submission(source, name="runner"))
    with running_pool(app):
        found = settled(client, auth("read"), review_id, "pending_review")
        assert found["status"] == "pending_review"
        severities = {f["severity"] for f in found["analysis_results"]["findings"]}
        assert severities & {"high", "critical"}

        queue = client.get(f"{BASE}/review/queue", headers=auth("read")).get_json()
        (entry,) = [item for item in queue["pending_reviews"] if item["review_id"] == review_id]
        assert entry["assigned_to"] == "alice@example.com" and entry["priority"] in ("high", "normal")
        assert entry["escalated_at"].endswith("Z") and entry["risk_score"] == found["risk_score"]
        assert queue["queue_stats"]["total_pending"] == 1 and queue["queue_stats"]["average_wait_time"] == "0m"

        body = {"decision": "approve", "comments": "Reviewed: commands are fixed", "conditions": ["no network"],
                "reviewer_id": "alice@example.com"}
        refused = client.post(f"{BASE}/review/{review_id}/decision", json=body, headers=auth("write"))
        assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "FORBIDDEN"
        decided = client.post(f"{BASE}/review/{review_id}/decision", json=body, headers=reviewer)
        assert decided.status_code == 200
        answer = decided.get_json()
        assert answer["decision"] == "approve" and answer["next_status"] == "approved_for_signing"
        assert answer["processed_at"].endswith("Z")
        again = client.post(f"{BASE}/review/{review_id}/decision", json=body, headers=auth("admin"))
        assert again.status_code == 409 and again.get_json()["error"]["code"] == "CONFLICT"
        signed = settled(client, auth("read"), review_id, "signed")
    assert signed["decision"]["conditions"] == ["no network"]
    manifest = client.get(f"{BASE}/signing/{review_id}", headers=auth("read")).get_json()["manifest"]
    assert manifest["review"]["conditions"] == ["no network"]
    assert manifest["review"]["reviewer_id"] == "alice@example.com"


def test_rejection_and_request_changes_with_resubmission(app, client, auth, reviewer):
    first = submit(client, auth("write"), submission(SHELL_TOOL, name="shell-a"))
    second = submit(client, auth("write"), submission(EVAL_TOOL, name="calc"))
    with running_pool(app):
        settled(client, auth("read"), first, "pending_review")
        settled(client, auth("read"), second, "pending_review")
        queue = client.get(f"{BASE}/review/queue", headers=auth("read")).get_json()
        assert {item["assigned_to"] for item in queue["pending_reviews"]} == {"alice@example.com", "bob@example.com"}
        rejected = client.post(f"{BASE}/review/{first}/decision", headers=reviewer,
                               json={"decision": "reject", "comments": "runs any command", "reviewer_id": "bob"})
        assert rejected.get_json()["next_status"] == "rejected"
        changes = client.post(f"{BASE}/review/{second}/decision", headers=reviewer,
                              json={"decision": "request_changes", "comments": "parse, do not eval",
                                    "reviewer_id": "bob"})
        assert changes.get_json()["next_status"] == "changes_requested"
        shown = session(client, auth("read"), second)
        assert shown["state"]["type"] == "changes_requested" and shown["status"] == "rejected"
        assert client.get(f"{BASE}/signing/{first}/download", headers=auth("read")).status_code == 409

        fixed = submit(client, auth("write"), submission("import ast\n\n\ndef calculate(text):\n"
                                                         "    return ast.literal_eval(text)\n",
                                                         name="calc", version="1.1.0"))
        resubmitted = settled(client, auth("read"), fixed, "signed", "pending_review")
    assert resubmitted["previous_review_id"] == second
    assert session(client, auth("read"), first)["signing_status"] == "not_approved"


def test_analyses_recorded_at_once_go_to_different_reviewers(app, client, auth):
    """Two analyses recorded in overlapping transactions (two workers): each reviewer gets one."""
    first = submit(client, auth("write"), submission(SHELL_TOOL, name="shell-a"))
    second = submit(client, auth("write"), submission(EVAL_TOOL, name="calc"))
    settings = app.extensions["lockgate"].settings

    def analysed():
        return workflow.Analysed(workflow.incomplete("a test"), [], None, utcnow())

    def record_first(ready):
        workflow.record_analysis(first, analysed(), settings)
        ready.set()
        time.sleep(0.5)  # the second analysis is being recorded by now

    thread, errors = in_other_transaction(record_first)
    with connection(), transaction():
        workflow.record_analysis(second, analysed(), settings)
    thread.join(10)
    assert errors == []
    queue = client.get(f"{BASE}/review/queue", headers=auth("read")).get_json()
    assert sorted(item["assigned_to"] for item in queue["pending_reviews"]) == ["alice@example.com",
                                                                               "bob@example.com"]


def test_sessions_are_paged_and_filtered_in_sql(app, client, auth):
    ids = [submit(client, auth("write"), submission(name=f"tool-{n}", metadata={
        "author": "a@example.com" if n % 2 else "b@example.com", "description": "", "permissions": []}))
        for n in range(5)]
    page = client.get(f"{BASE}/sessions?page=1&limit=2", headers=auth("read")).get_json()
    assert page["pagination"] == {"page": 1, "limit": 2, "total": 5, "has_next": True}
    assert [s["review_id"] for s in page["sessions"]] == ids[::-1][:2]
    last = client.get(f"{BASE}/sessions?page=3&limit=2", headers=auth("read")).get_json()
    assert last["pagination"]["has_next"] is False and len(last["sessions"]) == 1
    by_author = client.get(f"{BASE}/sessions?author=a@example.com", headers=auth("read")).get_json()
    assert by_author["pagination"]["total"] == 2
    submitted = client.get(f"{BASE}/sessions?status=submitted&limit=100", headers=auth("read")).get_json()
    assert submitted["pagination"]["total"] == 5
    assert client.get(f"{BASE}/sessions?status=approved", headers=auth("read")).get_json()["sessions"] == []
    item = page["sessions"][0]
    assert {"review_id", "tool_name", "status", "created_at", "updated_at", "tool", "state", "submitted_by",
            "submitted_at", "priority"} <= set(item)
    bad = client.get(f"{BASE}/sessions?status=nonsense", headers=auth("read"))
    assert bad.status_code == 400 and bad.get_json()["error"]["details"]["field"] == "status"


def test_errors_speak_the_reference_vocabulary(app, client, auth):
    missing = client.post(f"{BASE}/sessions", json={"tool_name": "x", "tool_version": "1"}, headers=auth("write"))
    assert missing.status_code == 400
    error = missing.get_json()["error"]
    assert error["code"] == "INVALID_REQUEST" and error["message"] == "Source code is required"
    assert error["details"]["field"] == "source_code" and error["details"]["reason"] == "missing_required_field"
    for bad_source, reason in (("   ", "invalid_value"), ("a\x00b", "invalid_json")):
        refused = client.post(f"{BASE}/sessions", json=submission(bad_source), headers=auth("write"))
        assert refused.status_code == 400
        details = refused.get_json()["error"]["details"]
        assert (details["field"], details["reason"]) == ("source_code", reason)
    unknown_language = client.post(f"{BASE}/sessions", json=submission(language="cobol"), headers=auth("write"))
    assert unknown_language.get_json()["error"]["details"]["field"] == "language"
    not_json = client.post(f"{BASE}/sessions", data="{", headers={**auth("write"), "Content-Type": "application/json"})
    assert not_json.status_code == 400 and not_json.get_json()["error"]["code"] == "INVALID_REQUEST"
    for path in ("/sessions/0f0e0d0c-0000-0000-0000-000000000000", "/analysis/nope", "/signing/nope",
                 "/signing/nope/download", "/signed/nope", "/nothing-here"):
        answer = client.get(f"{BASE}{path}", headers=auth("read"))
        assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "NOT_FOUND", path
    assert client.get(f"{BASE}/stats").get_json()["error"]["code"] == "UNAUTHORIZED"
    # The gateway's own API keeps its codes.
    assert client.get("/api/v1/sessions/nope", headers=auth("read")).get_json()["error"]["code"] == "not_found"


def test_source_size_limit(review_app):
    app = review_app({"review": {"max_source_bytes": 2048}})
    client = app.test_client()
    with connection():
        token = create_token("w", ["write"])[1]
    headers = {"Authorization": f"Bearer {token}"}
    refused = client.post(f"{BASE}/sessions", json=submission("x = 1\n" * 400), headers=headers)
    assert refused.status_code == 400
    assert refused.get_json()["error"]["details"] == {"field": "source_code", "reason": "too_large"}
    assert client.post(f"{BASE}/sessions", json=submission("x = 1\n" * 300), headers=headers).status_code == 201


def test_a_megabyte_of_source_fits_the_default_limit(client, auth):
    source = "x = 1\n" * (1024 * 1024 // 6)
    assert client.post(f"{BASE}/sessions", json=submission(source), headers=auth("write")).status_code == 201


def test_rate_limits_per_token(review_app):
    app = review_app({"rate_limits": {"review_submit": "2/min", "review_query": "3/min"}})
    client = app.test_client()
    with connection():
        headers = {"Authorization": f"Bearer {create_token('w', ['write'])[1]}"}
    for _ in range(2):
        assert client.post(f"{BASE}/sessions", json=submission(), headers=headers).status_code == 201
    limited = client.post(f"{BASE}/sessions", json=submission(), headers=headers)
    assert limited.status_code == 429 and limited.get_json()["error"]["code"] == "RATE_LIMITED"
    assert limited.headers["X-RateLimit-Limit"] == "2" and limited.headers["X-RateLimit-Remaining"] == "0"
    queries = [client.get(f"{BASE}/stats", headers=headers) for _ in range(4)]
    assert [q.status_code for q in queries] == [200, 200, 200, 429]
    assert queries[0].headers["X-RateLimit-Limit"] == "3"


def test_stats_and_queue_figures_come_from_the_data(app, client, auth, reviewer):
    ids = [submit(client, auth("write"), submission(name="clean")),
           submit(client, auth("write"), submission(SHELL_TOOL, name="shell"))]
    with running_pool(app):
        settled(client, auth("read"), ids[0], "signed")
        settled(client, auth("read"), ids[1], "pending_review")
    with connection():
        # As if it had waited two and a half hours.
        ReviewSession.update(escalated_at=utcnow() - timedelta(hours=2, minutes=30, seconds=20)).where(
            ReviewSession.id == ids[1]).execute()
    queue = client.get(f"{BASE}/review/queue", headers=auth("read")).get_json()
    assert queue["queue_stats"]["average_wait_time"] == "2h 30m"
    stats = client.get(f"{BASE}/stats", headers=auth("read")).get_json()
    assert stats["workflow_stats"] == {"total_reviews": 2, "approved": 1, "rejected": 0, "changes_requested": 0,
                                       "pending": 1}
    performance = stats["performance_metrics"]
    assert performance["auto_approval_rate"] == 1.0 and performance["human_review_rate"] == 0.5
    assert performance["average_review_time"] == "0m"
    insights = stats["security_insights"]
    assert "command_injection" in insights["common_vulnerabilities"]
    distribution = insights["risk_score_distribution"]
    assert distribution["low"] == 50 and distribution["medium"] + distribution["high"] == 50


def test_duration_text():
    assert service.duration_text(None) == "0m"
    assert service.duration_text(59) == "0m"
    assert service.duration_text(45 * 60) == "45m"
    assert service.duration_text(9000) == "2h 30m"
    assert service.duration_text(3 * 86400 + 4 * 3600 + 5 * 60) == "3d 4h"


def test_review_scope_model():
    def principal(*scopes):
        return Principal("t", "t", scopes)

    assert principal("review").allows("review") and principal("review").allows("read")
    assert not principal("review").allows("write")
    assert not principal("write").allows("review") and principal("write").allows("read")
    assert principal("admin").allows("review") and principal("admin").allows("write")
    assert not principal("read").allows("review")


def test_cli_creates_review_tokens(app):
    with app.app_context():  # as the ``flask`` command provides it
        result = app.test_cli_runner().invoke(args=["auth", "token", "--name", "r", "--scope", "review"])
    assert result.exit_code == 0, result.output
    with connection():
        from app.core.auth import authenticate

        found = authenticate(f"Bearer {result.stdout.strip().splitlines()[-1]}")
    assert found.scopes == ("review",)


def test_signing_waits_for_keys_then_completes(review_app, tmp_path):
    empty = tmp_path / "no-keys"
    app = review_app({"review": {"key_dir": str(empty)}})
    client = app.test_client()
    with connection():
        headers = {"Authorization": f"Bearer {create_token('a', ['admin'])[1]}"}
    review_id = submit(client, headers, submission())
    with running_pool(app):
        wait_until(lambda: session(client, headers, review_id)["signing_status"] == "pending"
                   and session(client, headers, review_id)["state"]["type"] == "approved_for_signing", timeout=60)
        wait_until(lambda: client.get(f"{BASE}/signing/{review_id}", headers=headers).get_json()["error"],
                   timeout=30, message="the signing attempt to fail for want of a key")
        status = client.get(f"{BASE}/signing/{review_id}", headers=headers).get_json()
        assert "flask signing init" in status["error"]
        assert client.get(f"{BASE}/signing/{review_id}/download", headers=headers).status_code == 409
        signing.init(empty)
        # The SDK's signing request signs at once, without waiting for the retry.
        signed = client.post(f"{BASE}/sign", json={"review_id": review_id, "signing_key_id": "any"}, headers=headers)
        assert signed.status_code == 200, signed.get_json()
        assert signed.get_json()["signer_id"] == signing.current_key_id(empty)
    assert session(client, headers, review_id)["status"] == "signed"


def test_analysis_survives_a_lost_worker(app, client, auth):
    review_id = submit(client, auth("write"), submission())
    from app.review import workflow

    with connection():
        (claimed,) = jobs.claim(workflow.ANALYSIS, 1, 10, 0.2, "dead-worker")
    assert claimed.payload == {"review_id": review_id}
    # The claimant dies without a word: its claim expires, and another worker's pool runs the job.
    with running_pool(app):
        found = settled(client, auth("read"), review_id, "signed")
    assert found["analysis_results"] is not None
