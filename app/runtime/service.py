"""The runtime's rules: agents and their definitions, executions asked for, cancelled and listed, workflows.

An agent is stored with its DSL source and the parsed program; an execution
is a row pointing at the job that runs it (``app.runtime.executor``), created
in the same transaction, so it is queued exactly when the request succeeds.
``Idempotency-Key``: the key is stored with the execution (unique per agent),
so a retried request reaches the same execution whichever worker answers it.

Lock order: a transaction writes rows in the order job, execution, agent, as
the executor does when it starts and records a run and as a delete does. (On
PostgreSQL a key's uniqueness check waits for whoever is updating the
execution holding that key: taking the agent's row before it deadlocked with
the executor.)

Workflows run the same way and the request waits for the result: enqueueing
a job (rather than running inline in the request) keeps every run durable,
bounded per agent and listed in its history; the wait polls the execution's
row without holding a database connection in between.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from datetime import timedelta

from peewee import IntegrityError, fn

from app.core import events, jobs
from app.core.db import release_connection, transaction, utcnow
from app.core.errors import ApiError, BadGateway, BadRequest, Conflict, NotFound
from app.runtime import definition, executor
from app.runtime.models import (
    CANCELLED,
    CANCELLED_CODE,
    COMPLETED,
    FAILED,
    FINISHED,
    QUEUED,
    REQUIREMENT_UNMET,
    RUNNING,
    TIMED_OUT,
    TIMEOUT,
    UNFINISHED,
    RuntimeAgent,
    RuntimeExecution,
)

WORKFLOW_POLL_SECS = 0.05
ACTIVITY_WINDOW_SECS = 60.0
MAX_KEY_CHARS = 200
# Printable ASCII, no space at either end (a header value's edges are trimmed in transit).
KEY_PATTERN = re.compile(rf"^[!-~](?:[ -~]{{0,{MAX_KEY_CHARS - 2}}}[!-~])?$")


class WorkflowTimedOut(ApiError):
    status, code, default_message = 504, "timeout", "The workflow did not finish in time"


# ---- agents ---------------------------------------------------------------------------


def find_agent(agent_id: str) -> RuntimeAgent:
    agent = RuntimeAgent.get_or_none(RuntimeAgent.id == agent_id)
    if agent is None:
        raise _no_agent(agent_id)
    return agent


def _no_agent(agent_id: str) -> NotFound:
    return NotFound(f"No agent {agent_id!r}", details={"agent_id": agent_id})


def list_agent_ids() -> list[str]:
    return [agent_id for (agent_id,) in RuntimeAgent.select(RuntimeAgent.id).order_by(RuntimeAgent.created_at,
                                                                                       RuntimeAgent.id).tuples()]


def _definition(settings, name: str, source: str) -> tuple[definition.Program, str]:
    """The parsed program and the name of its agent that runs: the one named like the agent, else the first."""
    program = definition.parse_source(source, settings.get("runtime.max_dsl_bytes"))
    names = [agent.name for agent in program.agents]
    wanted = definition.identifier(name)
    return program, name if name in names else wanted if wanted in names else names[0]


def agent_event(agent: RuntimeAgent) -> dict:
    return {"id": agent.id, "name": agent.name, "description": agent.description,
            "agent_name": agent.agent_name, "created_at": agent.created_at}


def create_agent(settings, body: dict) -> RuntimeAgent:
    source = body["dsl"]
    options = {}
    if source is None:
        source = definition.from_sdk(body)
        options = {key: body[key] for key in definition.SDK_OPTIONS if body.get(key) is not None}
    program, agent_name = _definition(settings, body["name"], source)
    description = body.get("description") or program.metadata.get("description") or ""
    now = utcnow()
    agent_id = body.get("id") or str(uuid.uuid4())
    try:
        with transaction():
            _check_free(agent_id, body["name"])
            agent = RuntimeAgent.create(
                id=agent_id, name=body["name"], description=str(description)[:2000], dsl=source,
                program=definition.dump(program), agent_name=agent_name, options=json.dumps(options),
                created_at=now, updated_at=now, last_activity_at=now)
            events.publish("agent.created", agent_event(agent))
    except IntegrityError:
        # Another request took the id or the name between the check and the insert.
        raise Conflict("An agent with this id or name already exists",
                       details={"id": agent_id, "name": body["name"]}) from None
    return agent


def _check_free(agent_id: str | None, name: str | None, except_id: str | None = None) -> None:
    if agent_id is not None and RuntimeAgent.get_or_none(RuntimeAgent.id == agent_id) is not None:
        raise Conflict(f"An agent with id {agent_id!r} already exists", details={"id": agent_id})
    if name is not None:
        other = RuntimeAgent.get_or_none(RuntimeAgent.name == name)
        if other is not None and other.id != except_id:
            raise Conflict(f"An agent named {name!r} already exists", details={"name": name, "id": other.id})


def update_agent(settings, agent_id: str, body: dict) -> RuntimeAgent:
    current = find_agent(agent_id)
    name = body.get("name", current.name)
    now = utcnow()
    changes = {"name": name, "updated_at": now, "last_activity_at": now}
    if "dsl" in body:
        program, agent_name = _definition(settings, name, body["dsl"])
        changes.update(dsl=body["dsl"], program=definition.dump(program), agent_name=agent_name, options="{}",
                       description=str(body.get("description") or program.metadata.get("description") or "")[:2000])
    try:
        with transaction():
            find_agent(agent_id)
            _check_free(None, name, except_id=agent_id)
            RuntimeAgent.update(changes).where(RuntimeAgent.id == agent_id).execute()
    except IntegrityError:
        raise Conflict(f"An agent named {name!r} already exists", details={"name": name}) from None
    return find_agent(agent_id)


def delete_agent(agent_id: str) -> None:
    """The agent, its executions and their jobs (running ones stop at their next step, unrecorded)."""
    with transaction():
        agent = find_agent(agent_id)
        jobs.discard(executor.KIND_NAME, agent_id)
        RuntimeExecution.delete().where(RuntimeExecution.agent_id == agent_id).execute()
        RuntimeAgent.delete().where(RuntimeAgent.id == agent_id).execute()
        events.publish("agent.deleted", {**agent_event(agent), "deleted_at": utcnow()})


# ---- status -------------------------------------------------------------------------


def agent_status(settings, agent_id: str) -> dict:
    """State and resource use measured from its executions (see docs/runtime.md)."""
    agent = find_agent(agent_id)
    since = utcnow() - timedelta(seconds=ACTIVITY_WINDOW_SECS)
    recent = list(RuntimeExecution.select(RuntimeExecution.status, RuntimeExecution.cpu_ms,
                                          RuntimeExecution.memory_bytes, RuntimeExecution.finished_at)
                  .where((RuntimeExecution.agent_id == agent_id)
                         & (RuntimeExecution.status.in_(UNFINISHED) | (RuntimeExecution.finished_at >= since))))
    running = sum(1 for row in recent if row.status == RUNNING)
    queued = sum(1 for row in recent if row.status == QUEUED)
    cpu_ms = sum(row.cpu_ms or 0.0 for row in recent if row.status in FINISHED)
    memory = max((row.memory_bytes or 0 for row in recent), default=0)
    return {
        "agent_id": agent.id,
        "state": _state(settings, agent_id, running, queued),
        "last_activity": agent.last_activity_at,
        "resource_usage": {"memory_bytes": memory, "cpu_percent": round(cpu_ms / (ACTIVITY_WINDOW_SECS * 10), 3),
                           "active_tasks": running + queued},
    }


def _state(settings, agent_id: str, running: int, queued: int) -> str:
    if running and (queued or running >= settings.get("runtime.max_in_flight_per_agent")):
        return "busy"
    if running or queued:
        return "active"
    last = (RuntimeExecution.select(RuntimeExecution.status)
            .where((RuntimeExecution.agent_id == agent_id) & RuntimeExecution.finished_at.is_null(False))
            .order_by(RuntimeExecution.finished_at.desc()).limit(1).scalar())
    if last in (FAILED, TIMED_OUT):
        return "error"
    if last == CANCELLED:
        return "stopped"
    return "idle"


def agent_counts() -> tuple[int, int]:
    """Agents in all, and agents with an execution queued or running."""
    total = RuntimeAgent.select().count()
    active = (RuntimeExecution.select(fn.COUNT(fn.DISTINCT(RuntimeExecution.agent_id)))
              .where(RuntimeExecution.status.in_(UNFINISHED) & RuntimeExecution.agent_id.is_null(False)).scalar())
    return total, int(active or 0)


def status_counts(_settings) -> dict:
    """For GET /api/v1/status: agents, and executions waiting and running across workers."""
    counts = dict(RuntimeExecution.select(RuntimeExecution.status, fn.COUNT(RuntimeExecution.id))
                  .where(RuntimeExecution.status.in_(UNFINISHED)).group_by(RuntimeExecution.status).tuples())
    return {"runtime": {"agents": RuntimeAgent.select().count(), "queued": counts.get(QUEUED, 0),
                        "running": counts.get(RUNNING, 0)}}


# ---- executions -----------------------------------------------------------------------


def _check_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not KEY_PATTERN.match(key):
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable ASCII characters",
                         details={"Idempotency-Key": [f"1 to {MAX_KEY_CHARS} printable ASCII characters, "
                                                      "not starting or ending with a space"]})
    return key


def _enqueue(partition: str, **fields) -> RuntimeExecution:
    execution_id = str(uuid.uuid4())
    job_id = jobs.enqueue(executor.KIND_NAME, {"execution": execution_id}, partition=partition)
    return RuntimeExecution.create(id=execution_id, job=job_id, status=QUEUED, created_at=utcnow(), **fields)


def execute(settings, agent_id: str, body: dict, idempotency_key: str | None = None) -> RuntimeExecution:
    """Queue an execution; with a key already used for this agent, that execution instead."""
    key = _check_key(idempotency_key)
    parameters = json.dumps(body["parameters"], sort_keys=True)
    try:
        with transaction():
            agent = find_agent(agent_id)
            if key is not None:
                earlier = _by_key(agent_id, key)
                if earlier is not None:
                    return _same_request(earlier, body["input"], parameters)
            execution = _enqueue(agent.id, agent_id=agent.id, idempotency_key=key, origin="execute",
                                 input=body["input"], parameters=parameters)
            _touch(agent.id)
            return execution
    except IntegrityError:
        # The same key in a concurrent request, on this worker or another: its execution is the one.
        earlier = _by_key(agent_id, key) if key is not None else None
        if earlier is None:
            raise
        return _same_request(earlier, body["input"], parameters)


def _touch(agent_id: str) -> None:
    """Record activity on the agent: after its execution's row is written (the lock order above).

    Its row gone means a delete committed since the agent was read (one still in progress is waited
    for): the execution would outlive its agent, so the whole transaction is refused.
    """
    if not RuntimeAgent.update(last_activity_at=utcnow()).where(RuntimeAgent.id == agent_id).execute():
        raise _no_agent(agent_id)


def _by_key(agent_id: str, key: str) -> RuntimeExecution | None:
    return RuntimeExecution.get_or_none((RuntimeExecution.agent_id == agent_id)
                                        & (RuntimeExecution.idempotency_key == key))


def _same_request(earlier: RuntimeExecution, input_text: str, parameters: str) -> RuntimeExecution:
    if earlier.input != input_text or earlier.parameters != parameters:
        raise Conflict("This Idempotency-Key was used for another request to this agent",
                       details={"execution_id": earlier.id})
    return earlier


def find_execution(agent_id: str, execution_id: str) -> RuntimeExecution:
    row = RuntimeExecution.get_or_none((RuntimeExecution.id == execution_id)
                                       & (RuntimeExecution.agent_id == agent_id))
    if row is None:
        raise NotFound(f"Agent {agent_id!r} has no execution {execution_id!r}",
                       details={"agent_id": agent_id, "execution_id": execution_id})
    return row


def history(agent_id: str, limit: int, offset: int) -> tuple[list[RuntimeExecution], int]:
    find_agent(agent_id)
    query = RuntimeExecution.select().where(RuntimeExecution.agent_id == agent_id)
    rows = list(query.order_by(RuntimeExecution.created_at.desc(), RuntimeExecution.id.desc())
                .limit(limit).offset(offset))
    return rows, query.count()


def cancel(agent_id: str, execution_id: str) -> RuntimeExecution:
    """Queued: it never runs. Running: it stops at its next step and its result is dropped."""
    with transaction():
        find_agent(agent_id)
        row = find_execution(agent_id, execution_id)
        if not _end(row.id, CANCELLED, "cancelled by a client", CANCELLED_CODE):
            raise Conflict(f"Execution {execution_id} already ended ({row.status})",
                           details={"execution_id": execution_id, "status": row.status})
    return find_execution(agent_id, execution_id)


def _end(execution_id: str, status: str, error: str, code: str) -> bool:
    """End an unfinished execution from outside its run; False when it had already ended."""
    # Its job, when it is claimed later, finds the execution ended and does nothing.
    return bool(RuntimeExecution.update(status=status, error=error, error_code=code, finished_at=utcnow())
                .where((RuntimeExecution.id == execution_id) & RuntimeExecution.status.in_(UNFINISHED))
                .execute())


# ---- workflows ------------------------------------------------------------------------


def _workflow_agent(workflow_id: str, agent_id: str | None) -> RuntimeAgent | None:
    agent = (RuntimeAgent.get_or_none(RuntimeAgent.id == workflow_id)
             or RuntimeAgent.get_or_none(RuntimeAgent.name == workflow_id))
    if agent is not None and agent_id is not None and agent_id not in (agent.id, agent.name):
        raise BadRequest(f"agent_id {agent_id!r} is not the agent {workflow_id!r} names",
                         details={"agent_id": ["must name the workflow's agent, or be left out"]})
    return agent


# What a program starts with: a comment or a top-level item (app/runtime/dsl/README.md).
SOURCE_START = re.compile(r"\s*(?://|#|/\*|(?:agent|metadata|policy|type|function|schedule|channel|memory|webhook)\b)")


def _looks_like_source(text: str) -> bool:
    """DSL source rather than an agent's id or name: syntax errors in it then get their position (400)."""
    return SOURCE_START.match(text) is not None


def start_workflow(settings, body: dict) -> RuntimeExecution:
    parameters = dict(body["parameters"])
    input_text = parameters.pop("input") if isinstance(parameters.get("input"), str) else ""
    fields = {"origin": "workflow", "input": input_text, "parameters": json.dumps(parameters, sort_keys=True)}
    agent = _workflow_agent(body["workflow_id"], body["agent_id"])
    if agent is None:
        if not _looks_like_source(body["workflow_id"]):
            raise NotFound(f"No agent with id or name {body['workflow_id']!r}, and it is not DSL source",
                           details={"workflow_id": body["workflow_id"]})
        program = definition.parse_source(body["workflow_id"], settings.get("runtime.max_dsl_bytes"), "workflow_id")
        chosen = definition.choose(program, body["agent_id"])
        partition = "workflow:" + hashlib.sha256(body["workflow_id"].encode()).hexdigest()[:24]
        fields.update(program=definition.dump(program), agent_name=chosen.agent.name)
    with transaction():
        if agent is not None:
            agent = find_agent(agent.id)
            partition, fields["agent_id"] = agent.id, agent.id
        execution = _enqueue(partition, **fields)
        if agent is not None:
            _touch(agent.id)
        return execution


def run_workflow(settings, body: dict) -> dict:
    """Run to completion within ``[runtime] workflow_timeout_secs``: the result, or a clean error."""
    execution = start_workflow(settings, body)
    deadline = time.monotonic() + settings.get("runtime.workflow_timeout_secs")
    row = _wait(execution.id, deadline)
    if row.status in UNFINISHED:
        with transaction():
            _end(row.id, TIMED_OUT, "the workflow did not finish within [runtime] workflow_timeout_secs", TIMEOUT)
        row = RuntimeExecution.get_by_id(row.id)
    return _workflow_answer(row, settings.get("runtime.workflow_timeout_secs"))


def _wait(execution_id: str, deadline: float) -> RuntimeExecution:
    while True:
        row = RuntimeExecution.get_by_id(execution_id)
        if row.status in FINISHED or time.monotonic() >= deadline:
            return row
        release_connection()  # no connection held while waiting
        time.sleep(min(WORKFLOW_POLL_SECS, max(0.0, deadline - time.monotonic())))


def _workflow_answer(row: RuntimeExecution, timeout: float) -> dict:
    details = {"execution_id": row.id, "status": row.status, "error": row.error, "error_code": row.error_code}
    if row.status == COMPLETED:
        return {"result": row.result, "execution_id": row.id, "status": row.status}
    if row.status == TIMED_OUT:
        raise WorkflowTimedOut(f"The workflow did not finish in time: {row.error}", details={**details,
                                                                                             "timeout_secs": timeout})
    if row.error_code == REQUIREMENT_UNMET:
        raise BadRequest(f"The workflow's requirements are not met: {row.error}", details=details)
    if row.status == CANCELLED:
        raise Conflict("The workflow was cancelled", details=details)
    raise BadGateway(f"The workflow failed: {row.error}", details=details)
