"""The Tool Review API against real gunicorn workers: the workflow end to end, packages, limits, bad input."""

from __future__ import annotations

import io
import tarfile

import pytest
import requests

from tests.review.support import EVAL_TOOL, RELAXED, SHELL_TOOL, submission
from tests.review.test_signing import cryptography_only, openssl_recipe
from tests.support.http import assert_envelope
from tests.support.wait import wait_until

BASE = "/api/v1/tool-review"
CONFIG = {**RELAXED, "review": {**RELAXED["review"], "reviewers": ["alice@example.com"]}}


@pytest.fixture(scope="module")
def server(tmp_path_factory, backend):
    from tests.support.server import serve

    with serve(tmp_path_factory.mktemp("review"), backend, CONFIG) as instance:
        instance.flask("signing", "init")
        yield instance


def post(server, path, body, *scopes):
    return requests.post(f"{server.url}{BASE}{path}", json=body, headers=server.headers(*scopes), timeout=30)


def get(server, path, *scopes):
    return requests.get(f"{server.url}{BASE}{path}", headers=server.headers(*(scopes or ("read",))), timeout=30)


def settled(server, review_id, *states) -> dict:
    def reached():
        found = get(server, f"/sessions/{review_id}").json()
        return found if found["state"]["type"] in states else None

    return wait_until(reached, timeout=90, interval=0.2,
                      message=lambda: f"review {review_id} to reach {states}:\n{server.log()[-3000:]}")


def test_workflow_end_to_end_and_the_package_verifies_three_ways(server, tmp_path):
    clean = post(server, "/sessions", submission(name="clean-e2e"), "write").json()["review_id"]
    risky = {name: post(server, "/sessions", submission(source, name=f"{name}-e2e"), "write").json()["review_id"]
             for name, source in (("shell", SHELL_TOOL), ("eval", EVAL_TOOL))}
    assert settled(server, clean, "signed")["status"] == "signed"
    for review_id in risky.values():
        found = settled(server, review_id, "pending_review")
        assert {f["severity"] for f in found["analysis_results"]["findings"]} & {"high", "critical"}
    queue = get(server, "/review/queue").json()
    assert {item["review_id"] for item in queue["pending_reviews"]} >= set(risky.values())

    decision = {"decision": "approve", "comments": "fixed command", "conditions": ["sandboxed"],
                "reviewer_id": "alice@example.com"}
    assert_envelope(post(server, f"/review/{risky['shell']}/decision", decision, "write"), 403, "FORBIDDEN")
    approved = post(server, f"/review/{risky['shell']}/decision", decision, "review")
    assert approved.status_code == 200 and approved.json()["next_status"] == "approved_for_signing"
    assert_envelope(post(server, f"/review/{risky['shell']}/decision", decision, "review"), 409, "CONFLICT")
    rejected = post(server, f"/review/{risky['eval']}/decision",
                    {"decision": "reject", "comments": "eval of input", "reviewer_id": "alice@example.com"}, "review")
    assert rejected.json()["next_status"] == "rejected"
    assert_envelope(get(server, f"/signing/{risky['eval']}/download"), 409, "CONFLICT")
    settled(server, risky["shell"], "signed")

    download = get(server, f"/signing/{risky['shell']}/download")
    assert download.status_code == 200 and download.headers["Content-Type"] == "application/x-tar"
    path = tmp_path / "shell.tar"
    path.write_bytes(download.content)
    verified = server.flask("tools", "verify", str(path))
    assert "OK: shell-e2e 1.0.0" in verified.stdout
    root = server.dir / "data" / "signing" / "root.pem"  # what `flask signing init` made: trusted from here on
    cryptography_only(download.content, root.read_bytes())
    assert openssl_recipe(download.content, root, tmp_path / "ok").returncode == 0
    with tarfile.open(fileobj=io.BytesIO(download.content)) as tar:
        source = tar.extractfile("source/tool.py")
        offset = next(m for m in tar if m.name == "source/tool.py").offset_data
    assert source is not None
    tampered = bytearray(download.content)
    tampered[offset + 3] ^= 0x01
    path.write_bytes(bytes(tampered))
    assert server.flask("tools", "verify", str(path), check=False).returncode != 0
    with pytest.raises(AssertionError):
        cryptography_only(bytes(tampered), root.read_bytes())
    assert openssl_recipe(bytes(tampered), root, tmp_path / "tampered").returncode != 0

    stats = get(server, "/stats").json()
    assert stats["workflow_stats"]["total_reviews"] >= 3 and stats["workflow_stats"]["rejected"] >= 1
    assert 0 < stats["performance_metrics"]["auto_approval_rate"] <= 1


PATHOLOGICAL = {
    "deep nesting": "x = " + "(" * 10_000 + "1" + ")" * 10_000 + "\n",
    "one long line": "x = '" + "a" * (1024 * 1024 - 100) + "'\n",
    "repeated calls": "eval(x)\n" * 60_000,
    "deep javascript": "const x = " + "[" * 10_000 + "]" * 10_000 + ";\n",
}


def test_pathological_input_ends_in_a_result_or_a_clean_refusal(server):
    ids = {}
    for name, source in PATHOLOGICAL.items():
        language = "javascript" if "javascript" in name else "python"
        answer = post(server, "/sessions", submission(source, name=name.replace(" ", "-"), language=language), "write")
        assert answer.status_code in (201, 400), (name, answer.text)
        if answer.status_code == 400:
            assert answer.json()["error"]["code"] == "INVALID_REQUEST"
        else:
            ids[name] = answer.json()["review_id"]
    for name, review_id in ids.items():
        found = settled(server, review_id, "pending_review", "signed")
        assert found["analysis_results"] is not None, name
    binary = requests.post(f"{server.url}{BASE}/sessions", data=b'{"tool_name": "\xff\xfe", "source_code": 1}',
                           headers={**server.headers("write"), "Content-Type": "application/json"}, timeout=30)
    assert_envelope(binary, 400, "INVALID_REQUEST")
    nul = post(server, "/sessions", submission("a\x00b"), "write")
    assert nul.json()["error"]["details"]["field"] == "source_code"
    assert get(server, "/stats").status_code == 200  # the workers are still well


def test_per_minute_limits(server_factory):
    limited = server_factory({"rate_limits": {"review_submit": "3/min", "review_query": "5/min",
                                              "review_download": "2/min"}})
    limited.flask("signing", "init")
    codes = [post(limited, "/sessions", submission(), "write").status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    refused = post(limited, "/sessions", submission(), "write")
    error = assert_envelope(refused, 429, "RATE_LIMITED")
    assert error["message"] and refused.headers["X-RateLimit-Limit"] == "3"
    assert refused.headers["X-RateLimit-Remaining"] == "0" and int(refused.headers["Retry-After"]) > 0
    queries = [get(limited, "/review/queue").status_code for _ in range(6)]
    assert queries == [200] * 5 + [429]
    downloads = [get(limited, "/signing/unknown/download", "write").status_code for _ in range(3)]
    assert downloads == [404, 404, 429]
