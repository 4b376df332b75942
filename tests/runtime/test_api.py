"""The runtime API in process: agents, executions through the job pool and the runner, workflows, metrics, auth."""

import json
import logging
import time
from datetime import timedelta
from pathlib import Path

import psutil
import pytest

from app.agent.models import MemoryEntry
from app.core.db import SqliteDatabase, connection, database, utcnow
from app.core.models import Event, Job
from app.runtime import executor, service
from app.runtime.dsl import parse
from app.runtime.models import RuntimeAgent, RuntimeExecution
from tests.runtime.conftest import tool
from tests.support.transactions import in_other_transaction
from tests.support.wait import wait_until

AGENTS = Path(__file__).parent / "agents"
REFERENCE = (AGENTS / "reference_example.symbi").read_text()
FLAT_METRICS = {"uptime_seconds": int, "memory_usage_bytes": int, "memory_usage_percent": float,
                "cpu_usage_percent": float, "disk_usage_bytes": int, "disk_usage_percent": float,
                "active_agents": int, "total_agents": int, "secrets_count": int, "mcp_connections": int,
                "vector_db_items": int}
SDK_BODY = {"id": "sdk-agent-1", "name": "Helper bot", "description": "Tells the time", "system_prompt": "Be brief.",
            "tools": ["current_time"], "model": "echo-2", "temperature": 0.2, "top_p": 0.9, "max_tokens": 256}


def timekeeper(name="timekeeper", policy="", options="timeout = 30.seconds", capabilities='["current_time"]'):
    return f"""
metadata {{ description = "Knows the time" }}
agent {name}(question: String) -> String {{
    capabilities = {capabilities}
    policy rules {{
        {policy}
    }}
    with {options} {{
        return answer(question);
    }}
}}
"""


@pytest.fixture
def client(app):
    return app.test_client()


def create(client, auth, name="timekeeper", dsl=None, **extra):
    response = client.post("/api/v1/agents", json={"name": name, "dsl": dsl or timekeeper(name), **extra},
                           headers=auth("write"))
    assert response.status_code == 200, response.json
    assert response.json["status"] == "created"
    return response.json["id"]


def execute(client, auth, agent_id, body=None, key=None):
    headers = {**auth("write"), **({"Idempotency-Key": key} if key else {})}
    response = client.post(f"/api/v1/agents/{agent_id}/execute", json=body or {}, headers=headers)
    assert response.status_code == 200, response.json
    assert response.json["status"] == "execution_started"
    return response.json["execution_id"]


def finished(client, auth, agent_id, execution_id, timeout=15.0):
    def done():
        row = client.get(f"/api/v1/agents/{agent_id}/executions/{execution_id}", headers=auth("read")).json
        return row if row["status"] not in ("queued", "running") else None

    return wait_until(done, timeout, message=f"execution {execution_id} finished")


def topics():
    with connection():
        return [row.topic for row in Event.select().order_by(Event.id)]


# ---- health and metrics -------------------------------------------------------------


def test_health_answers_the_reference_fields_and_500_when_the_database_fails(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.json
    assert set(body) == {"status", "uptime_seconds", "timestamp", "version"}
    assert body["status"] == "healthy" and body["uptime_seconds"] >= 0 and body["timestamp"].endswith("Z")
    assert body["version"]
    database.initialize(SqliteDatabase("/proc/no-such-dir/lockgate.db"))
    broken = client.get("/api/v1/health")
    assert broken.status_code == 500
    assert set(broken.json) == {"status", "error", "timestamp"}
    assert broken.json["status"] == "unhealthy" and broken.json["error"].startswith("Database connection failed")


def test_metrics_hold_the_nested_and_the_flat_fields_all_measured(runtime_app, auth):
    app = runtime_app({"provider": {"api_key": "sk-metrics-secret"}})
    client = app.test_client()
    first = create(client, auth, "first")
    create(client, auth, "second")
    execute(client, auth, first)  # queued (no pool here): the agent is active
    with connection():
        MemoryEntry.create(session_id="s", user_id="u", seq=1, content="remembered", created_at=utcnow())
    body = client.get("/api/v1/metrics").json
    for name, kind in FLAT_METRICS.items():
        assert isinstance(body[name], kind), name
    assert body["agents"] == {"total": 2, "active": 1, "idle": 1}
    assert (body["total_agents"], body["active_agents"]) == (2, 1)
    assert body["secrets_count"] == 1  # provider.api_key, as GET /api/v1/config hides it
    assert body["vector_db_items"] == 1
    status = client.get("/api/v1/status", headers=auth("read")).json
    assert body["mcp_connections"] == status.get("mcp", {}).get("connections", 0)
    host = psutil.virtual_memory()
    assert abs(body["memory_usage_percent"] - host.percent) < 10
    assert body["system"]["memory_usage"] == f"{body['memory_usage_percent']:.1f}%"
    assert body["system"]["cpu_usage"].endswith("%") and 0 <= body["cpu_usage_percent"] <= 100
    assert 0 < body["disk_usage_bytes"] and 0 < body["disk_usage_percent"] <= 100
    assert body["system"]["uptime_seconds"] == body["uptime_seconds"] >= 0


# ---- agents ---------------------------------------------------------------------------------


def test_an_agent_is_created_from_dsl_and_stored_parsed(client, auth):
    agent_id = create(client, auth, "code_reviewer", REFERENCE)
    assert client.get("/api/v1/agents", headers=auth("read")).json == [agent_id]
    stored = client.get(f"/api/v1/agents/{agent_id}", headers=auth("read")).json
    assert stored["dsl"] == REFERENCE and stored["agent_name"] == "code_reviewer"
    assert stored["description"] == "Reviews code"
    assert stored["definition"] == json.loads(json.dumps(parse(REFERENCE).to_dict()))
    assert "agent.created" in topics()


@pytest.mark.parametrize(("source", "line", "column", "text"), [
    ("agent a {\n    capabilities = [\"read\",\n}", 3, 1, "}"),
    ("metadata { version = \"1\" }\nagent b {\n  with timeout = 30.secondz { }\n}", 3, 18, "30.secondz"),
    ("agent c {\n  policy p { allow: \"x\" if }\n}", 2, 28, "}"),
])
def test_dsl_syntax_errors_name_line_column_text_and_what_was_expected(client, auth, source, line, column, text):
    response = client.post("/api/v1/agents", json={"name": "broken", "dsl": source}, headers=auth("write"))
    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "bad_request" and f"line {line}, column {column}" in error["message"]
    details = error["details"]
    assert (details["line"], details["column"], details["text"]) == (line, column, text)
    assert isinstance(details["expected"], list)
    assert client.get("/api/v1/agents", headers=auth("read")).json == []


def test_dsl_without_an_agent_or_too_large_is_refused(runtime_app, auth):
    client = runtime_app({"runtime": {"max_dsl_bytes": 1024}}).test_client()
    empty = client.post("/api/v1/agents", json={"name": "x", "dsl": "metadata { a = 1 }"}, headers=auth("write"))
    assert empty.status_code == 400 and "no agent" in empty.json["error"]["message"]
    large = client.post("/api/v1/agents", json={"name": "x", "dsl": timekeeper() + "#" * 2000},
                        headers=auth("write"))
    assert large.status_code == 400 and large.json["error"]["details"] == {"dsl": ["at most 1024 bytes"]}


def test_the_sdk_body_becomes_an_equivalent_definition_with_its_own_id(client, auth):
    response = client.post("/api/v1/agents", json=SDK_BODY, headers=auth("write"))
    assert response.json == {"id": "sdk-agent-1", "status": "created"}
    stored = client.get("/api/v1/agents/sdk-agent-1", headers=auth("read")).json
    program = parse(stored["dsl"])  # the stored source is real DSL
    agent = program.agent()
    assert (agent.name, agent.capabilities) == ("Helper_bot", ["current_time"])
    assert program.metadata["system_prompt"] == "Be brief." and program.metadata["model"] == "echo-2"
    assert stored["options"] == {"model": "echo-2", "temperature": 0.2, "top_p": 0.9, "max_tokens": 256}
    again = client.post("/api/v1/agents", json={**SDK_BODY, "name": "other"}, headers=auth("write"))
    assert again.status_code == 409
    same_name = client.post("/api/v1/agents", json={**SDK_BODY, "id": "sdk-agent-2"}, headers=auth("write"))
    assert same_name.status_code == 409 and same_name.json["error"]["details"]["name"] == "Helper bot"


def test_update_needs_a_field_and_delete_removes_the_agent_with_its_executions(client, auth):
    agent_id = create(client, auth)
    execute(client, auth, agent_id)
    empty = client.put(f"/api/v1/agents/{agent_id}", json={}, headers=auth("write"))
    assert empty.status_code == 400
    renamed = client.put(f"/api/v1/agents/{agent_id}", json={"name": "renamed"}, headers=auth("write"))
    assert renamed.json == {"id": agent_id, "status": "updated"}
    bad = client.put(f"/api/v1/agents/{agent_id}", json={"dsl": "agent {"}, headers=auth("write"))
    assert bad.status_code == 400 and bad.json["error"]["details"]["line"] == 1
    changed = client.put(f"/api/v1/agents/{agent_id}", json={"dsl": timekeeper("other_name")}, headers=auth("write"))
    assert changed.status_code == 200
    stored = client.get(f"/api/v1/agents/{agent_id}", headers=auth("read")).json
    assert (stored["name"], stored["agent_name"]) == ("renamed", "other_name")
    assert client.put("/api/v1/agents/nope", json={"name": "x"}, headers=auth("write")).status_code == 404
    deleted = client.delete(f"/api/v1/agents/{agent_id}", headers=auth("write"))
    assert deleted.json == {"id": agent_id, "status": "deleted"}
    assert client.get(f"/api/v1/agents/{agent_id}/status", headers=auth("read")).status_code == 404
    assert client.delete(f"/api/v1/agents/{agent_id}", headers=auth("write")).status_code == 404
    with connection():
        assert RuntimeExecution.select().count() == 0 and Job.select().count() == 0
    assert topics()[-1] == "agent.deleted"


# ---- executions ------------------------------------------------------------------------------


def test_an_execution_runs_through_the_runner_with_the_tools_its_capabilities_allow(client, auth, pool):
    agent_id = create(client, auth)
    execution_id = execute(client, auth, agent_id, {"input": "/tool current_time {}"})
    row = finished(client, auth, agent_id, execution_id)
    assert row["status"] == "completed" and row["result"].startswith("Tool current_time returned:")
    assert [call["name"] for call in row["tool_calls"]] == ["current_time"]
    assert row["attempts"] == 1 and row["cpu_ms"] >= 0 and row["memory_bytes"] > 0
    assert topics()[-2:] == ["agent.execution.started", "agent.execution.completed"]


def test_the_definition_is_the_system_prompt_and_input_with_parameters_the_message(client, auth, pool):
    agent_id = create(client, auth)
    execution_id = execute(client, auth, agent_id, {"input": "hello", "parameters": {"b": 2, "a": [1]}})
    row = finished(client, auth, agent_id, execution_id)
    assert row["result"] == 'echo: hello\n\nParameters: {"a": [1], "b": 2}'
    assert row["parameters"] == {"a": [1], "b": 2}


def test_a_policy_denying_a_tool_keeps_it_from_the_model(client, auth, pool):
    agent_id = create(client, auth, dsl=timekeeper(policy='deny: ["current_time"]'))
    execution_id = execute(client, auth, agent_id, {"input": "/tool current_time {}"})
    row = finished(client, auth, agent_id, execution_id)
    # The model asked for it; it was never offered, so nothing ran.
    assert row["status"] == "completed" and row["result"] == "echo: unknown tool current_time"
    assert row["tool_calls"] == []


def test_deny_by_capability_tag_wins_over_allow(client, auth, pool):
    agent_id = create(client, auth, dsl=timekeeper(policy='allow: ["current_time"]\n deny: ["time"]'))
    row = finished(client, auth, agent_id, execute(client, auth, agent_id, {"input": "/tool current_time {}"}))
    assert row["result"] == "echo: unknown tool current_time"


def test_high_security_withholds_tools_that_reach_outside(client, auth, pool, extra_tools):
    extra_tools(tool("fetch_page", lambda args, ctx: "page", tags=["network"]))
    relaxed = create(client, auth, "relaxed", timekeeper("relaxed", capabilities='["fetch_page"]'))
    strict = create(client, auth, "strict", timekeeper("strict", capabilities='["fetch_page"]',
                                                       options='security = "high"'))
    asked = {"input": "/tool fetch_page {}"}
    assert finished(client, auth, relaxed, execute(client, auth, relaxed, asked))["result"] == \
        "Tool fetch_page returned: page"
    assert finished(client, auth, strict, execute(client, auth, strict, asked))["result"] == \
        "echo: unknown tool fetch_page"


def test_a_require_rule_fails_the_run_before_it_starts(client, auth, pool):
    agent_id = create(client, auth, "code_reviewer", REFERENCE)
    refused = finished(client, auth, agent_id, execute(client, auth, agent_id, {"input": "review this"}))
    assert refused["status"] == "failed" and refused["error_code"] == "requirement_unmet"
    assert refused["error"] == "requirements not met: parameters.input_sanitization must be true (it is missing)"
    assert topics()[-1] == "agent.execution.failed"
    granted = finished(client, auth, agent_id, execute(
        client, auth, agent_id, {"input": "review this", "parameters": {"input_sanitization": True}}))
    assert granted["status"] == "completed" and granted["result"].startswith("echo: review this")


def test_a_require_rule_naming_a_tool_needs_it_on_offer(client, auth, pool):
    agent_id = create(client, auth, dsl=timekeeper(policy='require: ["memory_search"]'))
    row = finished(client, auth, agent_id, execute(client, auth, agent_id, {"input": "hi"}))
    assert row["status"] == "failed" and "'memory_search' must be available" in row["error"]


def test_audit_rules_write_entries_under_runtime_audit(client, auth, pool, caplog):
    caplog.set_level(logging.DEBUG, logger="runtime::audit")
    agent_id = create(client, auth, dsl=timekeeper(policy='audit: { log_level: "warn", include_findings: true }'))
    execution_id = execute(client, auth, agent_id, {"input": "/tool current_time {}"})
    finished(client, auth, agent_id, execution_id)
    entries = [r for r in caplog.records if r.name == "runtime::audit" and execution_id in r.getMessage()]
    assert [r.levelno for r in entries] == [logging.WARNING] * 3
    messages = [r.getMessage() for r in entries]
    assert "started: attempt 1, tools offered: current_time" in messages[0]
    assert "called current_time {}: ok" in messages[1]
    assert "completed; result: Tool current_time returned:" in messages[2]


def test_with_timeout_bounds_the_run(client, auth, pool, extra_tools):
    extra_tools(tool("slow", lambda args, ctx: time.sleep(0.6) or "late"))
    agent_id = create(client, auth, dsl=timekeeper(capabilities='["slow"]', options="timeout = 0.3s"))
    row = finished(client, auth, agent_id, execute(client, auth, agent_id, {"input": "/tool slow {}"}))
    assert row["status"] == "timed_out" and row["error_code"] == "timeout"
    assert row["error"] == "the run took longer than its timeout of 0.3s"
    assert topics()[-1] == "agent.execution.failed"


def test_a_provider_failure_fails_the_execution(client, auth, pool):
    agent_id = create(client, auth)
    row = finished(client, auth, agent_id, execute(client, auth, agent_id, {"input": "/fail"}))
    assert (row["status"], row["error_code"]) == ("failed", "provider_error")
    assert "echo provider asked to fail" in row["error"]


def test_persistent_memory_is_kept_and_ephemeral_memory_discarded(client, auth, pool):
    keeper = create(client, auth, "keeper", timekeeper("keeper", options='memory = "persistent"'))
    forgetter = create(client, auth, "forgetter", timekeeper("forgetter", options='memory = "ephemeral"'))
    finished(client, auth, keeper, execute(client, auth, keeper, {"input": "the password is swordfish"}))
    finished(client, auth, forgetter, execute(client, auth, forgetter, {"input": "the code is 1234"}))
    with connection():
        entries = [(row.user_id, row.content) for row in MemoryEntry.select()]
    assert entries == [(f"runtime:{keeper}", "User: the password is swordfish\nAssistant: echo: the password is "
                                             "swordfish")]
    searcher = create(client, auth, "searcher", timekeeper("searcher", options='memory = "persistent"',
                                                           capabilities='["memory_search"]'))
    ask = {"input": '/tool memory_search {"query": "swordfish"}'}
    assert '"results": []' in finished(client, auth, searcher, execute(client, auth, searcher, ask))["result"]
    client.put(f"/api/v1/agents/{keeper}", json={"dsl": timekeeper("keeper", options='memory = "persistent"',
                                                                   capabilities='["memory_search"]')},
               headers=auth("write"))
    recalled = finished(client, auth, keeper, execute(client, auth, keeper, ask))["result"]
    assert "the password is swordfish" in recalled  # its own earlier run, and only its own


def test_the_idempotency_key_returns_the_same_execution(client, auth):
    agent_id = create(client, auth)
    other = create(client, auth, "other")
    first = execute(client, auth, agent_id, {"input": "once"}, key="key-1")
    assert execute(client, auth, agent_id, {"input": "once"}, key="key-1") == first
    assert execute(client, auth, other, {"input": "once"}, key="key-1") != first  # per agent
    assert execute(client, auth, agent_id, {"input": "once"}) != first  # no key: a new one
    reused = client.post(f"/api/v1/agents/{agent_id}/execute", json={"input": "twice"},
                         headers={**auth("write"), "Idempotency-Key": "key-1"})
    assert reused.status_code == 409 and reused.json["error"]["details"] == {"execution_id": first}
    bad = client.post(f"/api/v1/agents/{agent_id}/execute", json={}, headers={**auth("write"),
                                                                             "Idempotency-Key": "x" * 201})
    assert bad.status_code == 400
    with connection():
        assert RuntimeExecution.select().where(RuntimeExecution.agent_id == agent_id).count() == 2


def test_a_key_in_use_by_an_open_transaction_is_waited_for_without_deadlock(client, auth):
    """A transaction writing an execution with a key, then its agent's row (the order of the executor and
    of every request): a request with the same key meanwhile waits for it, then answers that execution."""
    agent_id = create(client, auth)
    first = "execution-in-flight"

    def in_flight(ready):
        RuntimeExecution.create(id=first, agent_id=agent_id, idempotency_key="key-1", origin="execute",
                                status="queued", input="once", parameters="{}", created_at=utcnow())
        ready.set()
        time.sleep(0.5)  # the request below is waiting on this transaction by now
        RuntimeAgent.update(last_activity_at=utcnow()).where(RuntimeAgent.id == agent_id).execute()

    thread, errors = in_other_transaction(in_flight)
    assert execute(client, auth, agent_id, {"input": "once"}, key="key-1") == first
    thread.join(10)
    assert errors == []


def test_an_execution_asked_for_while_its_agent_is_deleted_is_refused(client, auth):
    agent_id = create(client, auth)

    def delete(ready):
        service.delete_agent(agent_id)
        ready.set()
        time.sleep(0.5)  # the request below has read the agent by now

    thread, errors = in_other_transaction(delete)
    response = client.post(f"/api/v1/agents/{agent_id}/execute", json={"input": "late"}, headers=auth("write"))
    thread.join(10)
    assert errors == [] and response.status_code == 404, response.json
    with connection():
        assert RuntimeExecution.select().where(RuntimeExecution.agent_id == agent_id).count() == 0
        assert Job.select().where(Job.partition_key == agent_id).count() == 0


def test_history_is_paged_newest_first(client, auth, pool):
    agent_id = create(client, auth)
    ids = [execute(client, auth, agent_id, {"input": f"run {n}"}) for n in range(3)]
    for execution_id in ids:
        finished(client, auth, agent_id, execution_id)
    page = client.get(f"/api/v1/agents/{agent_id}/history?limit=2", headers=auth("read")).json
    assert page["total"] == 3 and [e["execution_id"] for e in page["history"]] == [ids[2], ids[1]]
    assert {"execution_id", "status", "timestamp", "result", "error"} <= set(page["history"][0])
    assert page["history"][0]["result"] == "echo: run 2"
    rest = client.get(f"/api/v1/agents/{agent_id}/history?limit=2&offset=2", headers=auth("read")).json
    assert [e["execution_id"] for e in rest["history"]] == [ids[0]]
    assert client.get(f"/api/v1/agents/{agent_id}/history?limit=0", headers=auth("read")).status_code == 400
    assert client.get("/api/v1/agents/nope/history", headers=auth("read")).status_code == 404


def test_a_cancelled_execution_never_runs(app, client, auth):
    agent_id = create(client, auth)
    execution_id = execute(client, auth, agent_id, {"input": "never"})
    cancelled = client.post(f"/api/v1/agents/{agent_id}/executions/{execution_id}/cancel", headers=auth("write"))
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    again = client.post(f"/api/v1/agents/{agent_id}/executions/{execution_id}/cancel", headers=auth("write"))
    assert again.status_code == 409
    from app.core import jobs

    pool = jobs.Pool(app.extensions["lockgate"], [executor.KIND])
    assert pool.poll() == 1
    pool.wait(10)
    row = client.get(f"/api/v1/agents/{agent_id}/executions/{execution_id}", headers=auth("read")).json
    assert (row["status"], row["result"], row["attempts"]) == ("cancelled", None, 0)
    assert client.get(f"/api/v1/agents/{agent_id}/status", headers=auth("read")).json["state"] == "stopped"
    unknown = client.post(f"/api/v1/agents/{agent_id}/executions/nope/cancel", headers=auth("write"))
    assert unknown.status_code == 404


def test_a_cancel_committed_while_the_execution_starts_is_kept(client, auth, monkeypatch):
    """The executor reads the execution, then marks it running: a cancel that another worker commits in
    between is not overwritten, and the run does not start."""
    from app.core import jobs

    agent_id = create(client, auth)
    execution_id = execute(client, auth, agent_id, {"input": "never"})
    measure = executor.rss_bytes

    def cancelled_meanwhile():  # measured between the executor's read and its write
        service.cancel(agent_id, execution_id)
        return measure()

    monkeypatch.setattr(executor, "rss_bytes", cancelled_meanwhile)
    assert executor._start(execution_id, max_attempts=3) == jobs.Outcome(jobs.SUCCEEDED)
    row = client.get(f"/api/v1/agents/{agent_id}/executions/{execution_id}", headers=auth("read")).json
    assert (row["status"], row["attempts"]) == ("cancelled", 0)


def test_status_states_and_resource_usage_come_from_the_executions(runtime_app, auth):
    app = runtime_app({"runtime": {"max_in_flight_per_agent": 1}})
    client = app.test_client()
    agent_id = create(client, auth)
    status = client.get(f"/api/v1/agents/{agent_id}/status", headers=auth("read")).json
    assert set(status) == {"agent_id", "state", "last_activity", "resource_usage"}
    assert status["state"] == "idle" and status["resource_usage"] == {"memory_bytes": 0, "cpu_percent": 0.0,
                                                                      "active_tasks": 0}
    execute(client, auth, agent_id)
    assert client.get(f"/api/v1/agents/{agent_id}/status", headers=auth("read")).json["state"] == "active"
    with connection():
        RuntimeExecution.update(status="running", memory_bytes=5_000_000).execute()
    execute(client, auth, agent_id)
    busy = client.get(f"/api/v1/agents/{agent_id}/status", headers=auth("read")).json
    assert busy["state"] == "busy" and busy["resource_usage"]["active_tasks"] == 2
    assert busy["resource_usage"]["memory_bytes"] == 5_000_000
    with connection():
        RuntimeExecution.update(status="failed", finished_at=utcnow(), cpu_ms=600.0).execute()
    failed = client.get(f"/api/v1/agents/{agent_id}/status", headers=auth("read")).json
    # 1.2 s of CPU in the last minute: 2% of one core.
    assert failed["state"] == "error" and failed["resource_usage"]["cpu_percent"] == 2.0


# ---- workflows -------------------------------------------------------------------------------


def test_a_workflow_runs_a_stored_agent_by_id_or_name_or_dsl_source(client, auth, pool):
    agent_id = create(client, auth)
    by_id = client.post("/api/v1/workflows/execute", json={"workflow_id": agent_id,
                                                          "parameters": {"input": "by id"}})
    assert by_id.status_code == 200 and by_id.json["result"] == "echo: by id"
    by_name = client.post("/api/v1/workflows/execute", json={"workflow_id": "timekeeper", "parameters": {"n": 1},
                                                            "agent_id": agent_id})
    assert by_name.json["result"] == 'echo: Parameters: {"n": 1}'
    source = timekeeper("first") + timekeeper("second")
    inline = client.post("/api/v1/workflows/execute", json={"workflow_id": source, "agent_id": "second",
                                                           "parameters": {"input": "/tool current_time {}"}})
    assert inline.status_code == 200 and inline.json["result"].startswith("Tool current_time returned:")
    history = client.get(f"/api/v1/agents/{agent_id}/history", headers=auth("read")).json["history"]
    assert [e["origin"] for e in history] == ["workflow", "workflow"]


def test_workflow_errors_are_clean(client):
    unknown = client.post("/api/v1/workflows/execute", json={"workflow_id": "nobody", "parameters": {}})
    assert unknown.status_code == 404
    broken = client.post("/api/v1/workflows/execute", json={"workflow_id": "agent x {", "parameters": {}})
    assert broken.status_code == 400 and broken.json["error"]["details"]["line"] == 1
    missing = client.post("/api/v1/workflows/execute", json={"parameters": {}})
    assert missing.status_code == 400 and "workflow_id" in missing.json["error"]["details"]


def test_a_workflow_past_its_timeout_answers_504_and_is_marked_timed_out(runtime_app, auth):
    app = runtime_app({"runtime": {"workflow_timeout_secs": 0.3}})
    client = app.test_client()
    agent_id = create(client, auth)  # no pool runs it: it never finishes
    response = client.post("/api/v1/workflows/execute", json={"workflow_id": agent_id, "parameters": {}})
    assert response.status_code == 504
    error = response.json["error"]
    assert error["code"] == "timeout" and error["details"]["timeout_secs"] == 0.3
    row = client.get(f"/api/v1/agents/{agent_id}/history", headers=auth("read")).json["history"][0]
    assert (row["status"], row["error_code"]) == ("timed_out", "timeout")


def test_a_workflow_whose_requirement_fails_is_a_400(client, auth, pool):
    create(client, auth, "code_reviewer", REFERENCE)
    response = client.post("/api/v1/workflows/execute", json={"workflow_id": "code_reviewer", "parameters": {}})
    assert response.status_code == 400 and response.json["error"]["details"]["error_code"] == "requirement_unmet"


# ---- authentication and rate limits ------------------------------------------------------------


def test_agents_need_tokens_and_the_public_routes_do_not(client, auth):
    assert client.get("/api/v1/agents").status_code == 401
    assert client.post("/api/v1/agents", json={"name": "x", "dsl": timekeeper()}).status_code == 401
    assert client.get("/api/v1/agents", headers=auth("read")).status_code == 200
    refused = client.post("/api/v1/agents", json={"name": "x", "dsl": timekeeper()}, headers=auth("read"))
    assert refused.status_code == 403
    assert client.get("/api/v1/health").status_code == 200
    assert client.get("/api/v1/metrics").status_code == 200
    assert client.post("/api/v1/workflows/execute", json={"workflow_id": "nobody", "parameters": {}}).status_code \
        == 404


def test_require_auth_everywhere_closes_the_public_routes(runtime_app, auth):
    client = runtime_app({"runtime": {"require_auth_everywhere": True}}).test_client()
    for path in ("/api/v1/health", "/api/v1/metrics"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=auth("read")).status_code == 200
    body = {"workflow_id": "nobody", "parameters": {}}
    assert client.post("/api/v1/workflows/execute", json=body).status_code == 401
    assert client.post("/api/v1/workflows/execute", json=body, headers=auth("read")).status_code == 403
    assert client.post("/api/v1/workflows/execute", json=body, headers=auth("write")).status_code == 404


def test_api_auth_token_grants_write_on_this_api_only(client, monkeypatch):
    secret = {"Authorization": "Bearer symbiont-deployment-token"}
    assert client.get("/api/v1/agents", headers=secret).status_code == 401  # unset: nothing accepted
    monkeypatch.setenv("API_AUTH_TOKEN", "symbiont-deployment-token")
    assert client.get("/api/v1/agents", headers=secret).status_code == 200
    created = client.post("/api/v1/agents", json={"name": "env", "dsl": timekeeper()}, headers=secret)
    assert created.status_code == 200
    assert client.get("/api/v1/agents", headers={"Authorization": "Bearer symbiont-deployment-tokeN"}).status_code \
        == 401
    elsewhere = client.get("/api/v1/sessions", headers=secret)
    assert elsewhere.status_code == 403 and "not valid here" in elsewhere.json["error"]["message"]
    monkeypatch.setenv("API_AUTH_TOKEN", "")
    assert client.get("/api/v1/agents", headers={"Authorization": "Bearer "}).status_code == 401


def test_public_workflow_runs_are_rate_limited_per_client_address(runtime_app):
    client = runtime_app({"rate_limits": {"runtime_run": "2/min"}}).test_client()
    body = {"workflow_id": "nobody", "parameters": {}}
    here = [client.post("/api/v1/workflows/execute", json=body).status_code for _ in range(3)]
    assert here == [404, 404, 429]
    elsewhere = client.post("/api/v1/workflows/execute", json=body, environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert elsewhere.status_code == 404


def test_the_gateway_status_counts_agents_and_their_executions(client, auth):
    agent_id = create(client, auth)
    execute(client, auth, agent_id)
    assert client.get("/api/v1/status", headers=auth("read")).json["runtime"] == {"agents": 1, "queued": 1,
                                                                                  "running": 0}


def test_finished_executions_leave_the_history_after_the_retention(app, client, auth, pool):
    agent_id = create(client, auth)
    old, new = (finished(client, auth, agent_id, execute(client, auth, agent_id)) for _ in range(2))
    with connection():
        # [runtime] retention_days is 30 by default.
        Job.update(finished_at=utcnow() - timedelta(days=31)).where(
            Job.id == RuntimeExecution.get_by_id(old["execution_id"]).job_id).execute()
        executor.sweep_once(app.extensions["lockgate"].settings)
    history = client.get(f"/api/v1/agents/{agent_id}/history", headers=auth("read")).json["history"]
    assert [e["execution_id"] for e in history] == [new["execution_id"]]
