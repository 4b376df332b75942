"""The Symbiont runtime API against real gunicorn (2 workers): every endpoint, executions that survive a killed
worker, timeouts, auth, the Idempotency-Key across workers, and the official ``symbiont-sdk`` client."""

import os
import signal
import threading
import uuid
from pathlib import Path

import pytest
import requests

from tests.agent.providers.fake_llm import FakeLLMServer
from tests.support.http import assert_envelope, fresh_get
from tests.support.server import RELAXED_LIMITS
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e

REFERENCE = (Path(__file__).resolve().parents[1] / "runtime" / "agents" / "reference_example.symbi").read_text()
RUNTIME = {"rate_limits": {**RELAXED_LIMITS["rate_limits"], "runtime_read": "10000/s", "runtime_write": "10000/s",
                           "runtime_run": "10000/s"},
           "runtime": {"poll_interval_secs": 0.05}}
FLAT_METRICS = ("uptime_seconds", "memory_usage_bytes", "memory_usage_percent", "cpu_usage_percent",
                "disk_usage_bytes", "disk_usage_percent", "active_agents", "total_agents", "secrets_count",
                "mcp_connections", "vector_db_items")


def agent_source(name: str, policy: str = "", options: str = "timeout = 30.seconds") -> str:
    return f"""
agent {name}(question: String) -> String {{
    capabilities = ["current_time"]
    policy rules {{
        {policy}
    }}
    with {options} {{
        return answer(question);
    }}
}}
"""


def with_config(*tables: dict) -> dict:
    merged: dict = {}
    for table in (RUNTIME, *tables):
        for section, values in table.items():
            merged.setdefault(section, {}).update(values)
    return merged


class Runtime:
    """The runtime API of one server, each call on a fresh connection (so either worker may answer)."""

    def __init__(self, server, token: str | None = None):
        self.server = server
        self.headers = {"Authorization": f"Bearer {token or server.token('write')}"}

    def url(self, path: str) -> str:
        return f"{self.server.url}/api/v1{path}"

    def get(self, path: str, **params):
        return fresh_get(self.url(path), params=params, headers=self.headers)

    def post(self, path: str, body: dict | None = None, headers: dict | None = None, timeout: float = 30):
        with requests.Session() as session:
            return session.post(self.url(path), json=body if body is not None else {},
                                headers={**self.headers, **(headers or {})}, timeout=timeout)

    def put(self, path: str, body: dict):
        with requests.Session() as session:
            return session.put(self.url(path), json=body, headers=self.headers, timeout=30)

    def delete(self, path: str):
        with requests.Session() as session:
            return session.delete(self.url(path), headers=self.headers, timeout=30)

    def create(self, name: str, dsl: str) -> str:
        response = self.post("/agents", {"name": name, "dsl": dsl})
        assert response.status_code == 200, response.text
        return response.json()["id"]

    def execute(self, agent_id: str, body: dict | None = None, key: str | None = None) -> str:
        response = self.post(f"/agents/{agent_id}/execute", body, {"Idempotency-Key": key} if key else None)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "execution_started"
        return response.json()["execution_id"]

    def finished(self, agent_id: str, execution_id: str, timeout: float = 30.0) -> dict:
        def done():
            row = self.get(f"/agents/{agent_id}/executions/{execution_id}").json()
            return row if row["status"] not in ("queued", "running") else None

        return wait_until(done, timeout, 0.1, lambda: f"execution {execution_id} finished:\n{self.server.log()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory, backend):
    from tests.support.server import serve

    with serve(tmp_path_factory.mktemp("runtime"), backend, with_config()) as instance:
        yield instance


@pytest.fixture
def api(server):
    return Runtime(server)


# ---- the reference's endpoints ---------------------------------------------------------------


def test_health_and_metrics_are_public_and_complete(server):
    health = fresh_get(f"{server.url}/api/v1/health")
    assert health.status_code == 200
    assert set(health.json()) == {"status", "uptime_seconds", "timestamp", "version"}
    assert health.json()["status"] == "healthy"
    assert fresh_get(f"{server.url}/api/v1/status/health").status_code == 200  # the gateway's probe stays
    metrics = fresh_get(f"{server.url}/api/v1/metrics").json()
    assert set(metrics["system"]) == {"uptime_seconds", "memory_usage", "cpu_usage"}
    assert set(metrics["agents"]) == {"total", "active", "idle"}
    assert all(name in metrics for name in FLAT_METRICS)
    assert metrics["memory_usage_bytes"] > 0 and metrics["disk_usage_bytes"] > 0


def test_agents_lifecycle_over_http(api):
    agent_id = api.create("lifecycle", agent_source("lifecycle"))
    assert agent_id in api.get("/agents").json()
    status = api.get(f"/agents/{agent_id}/status").json()
    assert status["agent_id"] == agent_id and status["state"] == "idle"
    assert set(status["resource_usage"]) == {"memory_bytes", "cpu_percent", "active_tasks"}
    execution_id = api.execute(agent_id, {"input": "/tool current_time {}"})
    row = api.finished(agent_id, execution_id)
    assert row["status"] == "completed" and row["result"].startswith("Tool current_time returned:")
    history = api.get(f"/agents/{agent_id}/history").json()["history"]
    assert [(e["execution_id"], e["status"]) for e in history] == [(execution_id, "completed")]
    assert history[0]["timestamp"].endswith("Z")
    used = api.get(f"/agents/{agent_id}/status").json()["resource_usage"]
    assert used["memory_bytes"] > 0 and used["active_tasks"] == 0
    assert api.put(f"/agents/{agent_id}", {"name": "renamed"}).json() == {"id": agent_id, "status": "updated"}
    assert api.put(f"/agents/{agent_id}", {}).status_code == 400
    assert api.delete(f"/agents/{agent_id}").json() == {"id": agent_id, "status": "deleted"}
    assert_envelope(api.get(f"/agents/{agent_id}/status"), 404, "not_found")
    assert agent_id not in api.get("/agents").json()


def test_dsl_errors_carry_their_position(api):
    response = api.post("/agents", {"name": "broken", "dsl": "agent broken {\n  capabilities = [\"a\"\n}"})
    error = assert_envelope(response, 400, "bad_request")
    assert {key: error["details"][key] for key in ("line", "column", "text")} == {"line": 3, "column": 1, "text": "}"}
    assert "']'" in error["details"]["expected"]


def test_a_policy_denies_the_tool_the_model_asks_for(api):
    agent_id = api.create("denied", agent_source("denied", 'deny: ["current_time"]'))
    row = api.finished(agent_id, api.execute(agent_id, {"input": "/tool current_time {}"}))
    assert row["status"] == "completed" and row["result"] == "echo: unknown tool current_time"
    assert row["tool_calls"] == []


def test_a_require_rule_fails_the_run_and_audit_rules_are_logged(api, server):
    agent_id = api.create("code_reviewer", REFERENCE)
    row = api.finished(agent_id, api.execute(agent_id, {"input": "review"}))
    assert (row["status"], row["error_code"]) == ("failed", "requirement_unmet")
    assert "input_sanitization" in row["error"]

    def audited():
        entries = api.get("/logs", module="runtime::audit", level="info", since="1h").json()["entries"]
        return [entry for entry in entries if row["execution_id"] in entry["message"]]

    entries = wait_until(lambda: len(audited()) >= 2 and audited(), 10, 0.2, "audit entries stored")
    assert any("refused: requirements not met" in entry["message"] for entry in entries)


def test_the_idempotency_key_holds_across_workers(api, server):
    agent_id = api.create("idempotent", agent_source("idempotent"))
    key = str(uuid.uuid4())
    ids, lock = [], threading.Lock()

    def send():
        execution_id = api.execute(agent_id, {"input": "once"}, key=key)
        with lock:
            ids.append(execution_id)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(ids) == 8 and len(set(ids)) == 1
    assert api.get(f"/agents/{agent_id}/history").json()["total"] == 1


def test_a_workflow_answers_its_result(api):
    api.create("flow", agent_source("flow"))
    response = api.post("/workflows/execute", {"workflow_id": "flow", "parameters": {"input": "go"}})
    assert response.status_code == 200 and response.json()["result"] == "echo: go"
    inline = requests.post(api.url("/workflows/execute"), timeout=30, json={
        "workflow_id": agent_source("inline"), "parameters": {"input": "inline"}})
    assert inline.status_code == 200 and inline.json()["result"] == "echo: inline"


def test_auth_on_agents_and_not_on_the_public_routes(server):
    assert_envelope(fresh_get(f"{server.url}/api/v1/agents"), 401, "unauthorized")
    read = {"Authorization": f"Bearer {server.token('read')}"}
    assert fresh_get(f"{server.url}/api/v1/agents", headers=read).status_code == 200
    refused = requests.post(f"{server.url}/api/v1/agents", json={"name": "x", "dsl": agent_source("x")},
                            headers=read, timeout=10)
    assert_envelope(refused, 403, "forbidden")
    for path in ("/api/v1/health", "/api/v1/metrics"):
        assert fresh_get(f"{server.url}{path}").status_code == 200


# ---- servers of their own ----------------------------------------------------------------------


def test_api_auth_token_and_require_auth_everywhere(server_factory, monkeypatch):
    monkeypatch.setenv("API_AUTH_TOKEN", "deployment-secret-token")
    closed = server_factory(with_config({"runtime": {"require_auth_everywhere": True}}))
    secret = {"Authorization": "Bearer deployment-secret-token"}
    assert_envelope(fresh_get(f"{closed.url}/api/v1/health"), 401, "unauthorized")
    assert fresh_get(f"{closed.url}/api/v1/health", headers=secret).status_code == 200
    created = requests.post(f"{closed.url}/api/v1/agents", json={"name": "env", "dsl": agent_source("env")},
                            headers=secret, timeout=10)
    assert created.status_code == 200, created.text
    assert_envelope(fresh_get(f"{closed.url}/api/v1/sessions", headers=secret), 403, "forbidden")
    wrong = {"Authorization": "Bearer deployment-secret-tokeN"}
    assert_envelope(fresh_get(f"{closed.url}/api/v1/agents", headers=wrong), 401, "unauthorized")


@pytest.fixture
def fake_llm():
    with FakeLLMServer() as fake:
        yield fake


def llm_config(fake_llm, **runtime) -> dict:
    return with_config({
        "provider": {"name": "openai", "model": "gpt-fake", "base_url": fake_llm.url + "/v1", "api_key": "sk-x",
                     "max_retries": 0},
        "runtime": {"claim_secs": 1.0, **runtime},
    })


def claim_holder(server, execution_id: str) -> int | None:
    from app.core.db import connection, init_database
    from app.core.models import Job
    from app.runtime.models import RuntimeExecution

    init_database(server.database_url)
    with connection():
        row = (Job.select(Job.claimed_by).join(RuntimeExecution, on=(RuntimeExecution.job == Job.id))
               .where(RuntimeExecution.id == execution_id).first())
    return int(row.claimed_by.split(":")[1]) if row and row.claimed_by else None


def test_an_execution_survives_a_sigkill_of_the_worker_running_it(server_factory, fake_llm):
    server = server_factory(llm_config(fake_llm))
    api = Runtime(server)
    fake_llm.queue_reply(text="lost with the worker", delay=20)
    fake_llm.queue_reply(text="answered by the survivor")
    agent_id = api.create("durable", agent_source("durable"))
    execution_id = api.execute(agent_id, {"input": "survive this"})
    wait_until(lambda: fake_llm.requests, 15, 0.05, "the model asked")
    victim = wait_until(lambda: claim_holder(server, execution_id), 10, 0.05, "the execution claimed")
    assert victim in server.worker_pids()
    running = api.get(f"/agents/{agent_id}/executions/{execution_id}").json()
    assert (running["status"], running["attempts"]) == ("running", 1)
    os.kill(victim, signal.SIGKILL)
    row = api.finished(agent_id, execution_id, timeout=40)
    assert (row["status"], row["result"], row["attempts"]) == ("completed", "answered by the survivor", 2)
    assert len(fake_llm.requests) == 2
    assert claim_holder(server, execution_id) is None


def test_with_timeout_and_the_workflow_timeout_end_slow_runs(server_factory, fake_llm):
    server = server_factory(llm_config(fake_llm, workflow_timeout_secs=1.0))
    api = Runtime(server)
    fake_llm.queue_reply(text="far too late", delay=8)
    agent_id = api.create("hasty", agent_source("hasty", options="timeout = 1s"))
    row = api.finished(agent_id, api.execute(agent_id, {"input": "slow"}), timeout=20)
    assert (row["status"], row["error_code"]) == ("timed_out", "timeout")
    fake_llm.queue_reply(text="still too late", delay=8)
    patient = api.create("patient", agent_source("patient"))
    response = requests.post(api.url("/workflows/execute"), json={"workflow_id": patient, "parameters": {}},
                             timeout=30)
    error = assert_envelope(response, 504, "timeout")
    assert error["details"]["status"] == "timed_out"
    history = api.get(f"/agents/{patient}/history").json()["history"]
    assert history[0]["status"] == "timed_out"


# ---- the official SDK -------------------------------------------------------------------------


def test_the_symbiont_sdk_works_unmodified(server, monkeypatch):
    monkeypatch.setenv("SYMBIONT_AUTH_JWT_SECRET_KEY", "unused-by-these-calls")
    from symbiont import Client
    from symbiont.models import AgentState, AgentStatusResponse, HealthResponse, SystemMetrics

    client = Client(api_key=server.token("write"), base_url=f"{server.url}/api/v1")
    health = client.health_check()
    assert isinstance(health, HealthResponse) and health.status == "healthy"
    metrics = client.get_metrics()
    assert isinstance(metrics, SystemMetrics) and metrics.total_agents >= 0
    agent_id = f"sdk-{uuid.uuid4().hex[:8]}"
    created = client.create_agent({"id": agent_id, "name": f"SDK {agent_id}", "description": "made by the SDK",
                                   "system_prompt": "Answer briefly.", "tools": ["current_time"],
                                   "model": "echo-1", "temperature": 0.3, "top_p": 1.0, "max_tokens": 128})
    assert created == {"id": agent_id, "status": "created"}
    assert agent_id in client.list_agents()
    status = client.get_agent_status(agent_id)
    assert isinstance(status, AgentStatusResponse) and status.state in set(AgentState)
    started = client.execute_agent(agent_id, idempotency_key=str(uuid.uuid4()))
    assert started["status"] == "execution_started"
    row = Runtime(server).finished(agent_id, started["execution_id"])
    assert row["status"] == "completed"
    result = client.execute_workflow({"workflow_id": agent_id, "parameters": {"input": "from the sdk"},
                                      "agent_id": agent_id})
    assert result["result"] == "echo: from the sdk"
    assert client.delete_agent(agent_id) == {"id": agent_id, "status": "deleted"}
    assert agent_id not in client.list_agents()
