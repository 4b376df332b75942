"""Running executions: the ``runtime.execution`` job kind, one job per execution, partitioned by agent.

An execution is the domain record of a durable job, so it survives restarts
and every worker shares the queue; at most ``[runtime]
max_in_flight_per_agent`` executions of one agent run at once. A run goes
through the agent runner: the definition described as its instructions, the
input and parameters as the user message, the tools its rules permit, and
its ``with timeout`` as the run's deadline (in a served worker also a gevent
timeout, which cuts short a wait the deadline cannot reach).

Crashes: a worker that dies while running an execution stops renewing the
job's claim; once it lapses (``[runtime] claim_secs``) another worker claims
the job and runs the execution again from the start, as attempt 2. After
``[runtime] max_attempts`` starts the execution fails (``worker_lost``)
instead of being tried again. An execution that fails on its own (the model
failed, a requirement was not met, the deadline passed) is never retried.

The outcome is written by the job callbacks, in the transaction that records
the attempt and only while the claim is held, so a worker that lost its
claim never overwrites the result of the one that took over. An execution
cancelled (or timed out by a waiting workflow) while it runs keeps that
state: its run stops at its next step and its result is dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta

import gevent
import psutil
from gevent import monkey as gevent_monkey

from app.agent import runner
from app.agent.builtin_tools import default_registry
from app.agent.loop import DeadlineExceeded, ToolCallFinished, TurnResult
from app.agent.memory import Scope, entry_text, open_memory
from app.agent.providers import ProviderError
from app.core import events, jobs
from app.core.db import connection, transaction, utcnow
from app.core.leases import run_singleton
from app.runtime import definition, rules
from app.runtime.models import (
    COMPLETED,
    FAILED,
    GONE,
    INTERNAL,
    PROVIDER_ERROR,
    REQUIREMENT_UNMET,
    RUNNING,
    TIMED_OUT,
    TIMEOUT,
    UNFINISHED,
    WORKER_LOST,
    RuntimeAgent,
    RuntimeExecution,
)

log = logging.getLogger("runtime::executor")
audit_log = logging.getLogger("runtime::audit")

KIND_NAME = "runtime.execution"
MEMORY_SEQ = 0  # an execution's one exchange in memory
RETENTION_INTERVAL_SECS = 300.0
HARD_BOUND_GRACE_SECS = 1.0  # past the deadline, for the run to stop at a step on its own


class Stopped(Exception):
    """The execution was cancelled or timed out by its caller while it ran."""


@dataclass
class Finish:
    """How a run ended, as its execution records it."""

    status: str
    result: str | None = None
    error: str | None = None
    code: str | None = None
    tool_calls: list = field(default_factory=list)
    cpu_ms: float | None = None
    memory_bytes: int | None = None
    memory_entry: str | None = None  # what a persistent agent remembers of the run


@dataclass
class Run:
    """What a started execution needs, loaded when it starts."""

    execution: RuntimeExecution
    definition: definition.Definition
    options: dict


def limits(state) -> jobs.Limits:
    settings = state.settings
    return jobs.Limits(claim_secs=settings.get("runtime.claim_secs"), schedule=(),
                       concurrency=settings.get("runtime.max_concurrency"),
                       per_partition=settings.get("runtime.max_in_flight_per_agent"),
                       poll_secs=settings.get("runtime.poll_interval_secs"))


def timeout_secs(settings, options: dict) -> float:
    """The run's bound: its ``with timeout``, else the default; never beyond ``[runtime] max_timeout_secs``."""
    asked = options.get("timeout")
    if isinstance(asked, bool) or not isinstance(asked, (int, float)) or asked <= 0:
        asked = settings.get("runtime.default_timeout_secs")
    return float(min(asked, settings.get("runtime.max_timeout_secs")))


def rss_bytes() -> int:
    return psutil.Process().memory_info().rss


# ---- starting -------------------------------------------------------------------------


def _start(execution_id: str, max_attempts: int) -> Run | jobs.Outcome:
    """Mark the execution running (attempt n) and load its definition; an Outcome when it must not run."""
    with connection(), transaction():
        row = RuntimeExecution.get_or_none(RuntimeExecution.id == execution_id)
        if row is None or row.status not in UNFINISHED:
            return jobs.Outcome(jobs.SUCCEEDED)  # deleted, cancelled or timed out before it started
        if row.attempts >= max_attempts:
            error = f"the worker running it stopped {row.attempts} times; not tried again"
            return jobs.Outcome(jobs.FAILED, error=error, detail=Finish(FAILED, error=error, code=WORKER_LOST))
        agent = RuntimeAgent.get_or_none(RuntimeAgent.id == row.agent_id) if row.agent_id else None
        if row.program is None and agent is None:
            error = "its agent no longer exists"
            return jobs.Outcome(jobs.FAILED, error=error, detail=Finish(FAILED, error=error, code=GONE))
        if row.program is not None:
            loaded, options = definition.load(row.program, row.agent_name), {}
        else:
            loaded = definition.load(agent.program, agent.agent_name)
            options = json.loads(agent.options)
        now = utcnow()
        # Conditional: a cancel or a workflow's timeout committed since the read above stays as it is.
        started = (RuntimeExecution.update(status=RUNNING, started_at=now, attempts=RuntimeExecution.attempts + 1,
                                           memory_bytes=rss_bytes())
                   .where((RuntimeExecution.id == execution_id) & RuntimeExecution.status.in_(UNFINISHED))
                   .execute())
        if not started:
            return jobs.Outcome(jobs.SUCCEEDED)
        row = RuntimeExecution.get_by_id(execution_id)
        if agent is not None:  # after the execution's row: the lock order of app.runtime.service
            RuntimeAgent.update(last_activity_at=now).where(RuntimeAgent.id == agent.id).execute()
        events.publish("agent.execution.started", started_payload(row))
    return Run(row, loaded, options)


def started_payload(row: RuntimeExecution) -> dict:
    from app.runtime.schemas import ExecutionEventSchema

    return ExecutionEventSchema().dump(row)


# ---- running --------------------------------------------------------------------------


def user_message(input_text: str, parameters: dict) -> str:
    """The execution's input, then its parameters as JSON (only the input when there are none)."""
    if not parameters:
        return input_text or "Run."
    shown = json.dumps(parameters, ensure_ascii=False, sort_keys=True)
    return f"{input_text}\n\nParameters: {shown}" if input_text else f"Parameters: {shown}"


def _still_running(execution_id: str) -> None:
    with connection():
        status = RuntimeExecution.select(RuntimeExecution.status).where(RuntimeExecution.id == execution_id).scalar()
    if status != RUNNING:
        raise Stopped(status or "deleted")


def memory_user(agent_id: str) -> str:
    return f"runtime:{agent_id}"


def _timed_out(timeout: float, calls: list) -> Finish:
    return Finish(TIMED_OUT, error=f"the run took longer than its timeout of {timeout:g}s", code=TIMEOUT,
                  tool_calls=calls)


def _hard_bound(seconds: float):
    """In a served worker, interrupt the run wherever it waits once ``seconds`` have passed.

    The runner's deadline stops a run between steps and bounds each request to
    the model, but a provider's own retries may wait past it; a gevent timeout
    cuts those short. Outside gevent (tests, CLI) the runner's deadline alone applies.
    """
    if not gevent_monkey.is_module_patched("socket"):
        return contextlib.nullcontext()
    return gevent.Timeout(seconds, DeadlineExceeded("the run reached its deadline"))


def _run(settings, run: Run, claim: jobs.Claim) -> Finish:
    row, loaded = run.execution, run.definition
    parameters = json.loads(row.parameters)
    policy = rules.tool_policy(loaded)
    registry = default_registry()
    offered = registry.offered(settings, policy)
    problems = rules.unmet(loaded, parameters, offered)
    audit = rules.audit(loaded)
    what = f"execution {row.id} of agent {row.agent_id or loaded.agent.name}"
    if audit.enabled:
        audit_log.log(audit.level, "%s started: attempt %d, tools offered: %s", what, row.attempts,
                      ", ".join(tool.name for tool in offered) or "none")
    if problems:
        error = "requirements not met: " + "; ".join(problems)
        if audit.enabled:
            audit_log.log(audit.level, "%s refused: %s", what, error)
        return Finish(FAILED, error=error, code=REQUIREMENT_UNMET)
    options = loaded.agent.with_options
    timeout = timeout_secs(settings, options)
    deadline = time.monotonic() + timeout
    persistent = str(options.get("memory", "ephemeral")).lower() == "persistent" and row.agent_id is not None
    message = user_message(row.input, parameters)
    contributions = [runner.instructions(loaded.instructions())]
    if persistent:
        with connection():
            contributions.append(runner.recalled(settings, message, Scope(user_id=memory_user(row.agent_id))))
    provider = runner.provider_for(settings, deadline, **definition.provider_options(run.options))
    cpu_started = time.thread_time()
    calls = []
    try:
        result = None
        with _hard_bound(timeout + HARD_BOUND_GRACE_SECS):
            # A persistent agent's memory is its own "user": memory_search finds its earlier runs too.
            identity = runner.Identity(execution_id=row.id, user_id=memory_user(row.agent_id) if persistent else None)
            for event in runner.run(settings, runner.Conversation(message), identity,
                                    policy=policy, contributions=contributions, registry=registry,
                                    provider=provider, deadline=deadline):
                if isinstance(event, ToolCallFinished):
                    calls.append(event.record.as_dict())
                    if audit.enabled:
                        audit_log.log(audit.level, "%s called %s %s: %s", what, event.record.name,
                                      json.dumps(event.record.arguments, default=str),
                                      "error" if event.record.is_error else "ok")
                    claim.check()
                    _still_running(row.id)
                elif isinstance(event, TurnResult):
                    result = event
        finish = Finish(COMPLETED, result=result.content, tool_calls=calls,
                        memory_entry=entry_text(message, result.content) if persistent else None)
    except DeadlineExceeded:
        finish = _timed_out(timeout, calls)
    except ProviderError as exc:
        if time.monotonic() >= deadline:  # its last request was cut short by the deadline
            finish = _timed_out(timeout, calls)
        else:
            finish = Finish(FAILED, error=f"the model provider failed: {exc.message}", code=PROVIDER_ERROR,
                            tool_calls=calls)
    finish.cpu_ms = round((time.thread_time() - cpu_started) * 1000, 3)
    finish.memory_bytes = rss_bytes()
    if audit.enabled:
        ending = f"{finish.status}" + (f": {finish.error}" if finish.error else "")
        if audit.include_results and finish.result is not None:
            ending += f"; result: {finish.result[:2000]}"
        audit_log.log(audit.level, "%s %s", what, ending)
    return finish


def handle(claim: jobs.Claim, state) -> jobs.Outcome | None:
    execution_id = claim.payload["execution"]
    started = _start(execution_id, state.settings.get("runtime.max_attempts"))
    if isinstance(started, jobs.Outcome):
        return started
    try:
        finish = _run(state.settings, started, claim)
    except Stopped as exc:
        log.info("execution %s stopped while running (%s)", execution_id, exc)
        return jobs.Outcome(jobs.SUCCEEDED)
    if finish.status == COMPLETED:
        return jobs.Outcome(jobs.SUCCEEDED, detail=finish)
    return jobs.Outcome(jobs.FAILED, error=finish.error, detail=finish)


# ---- recording (inside the transaction recording the attempt, under the claim) -------------------------


def finished_payload(row: RuntimeExecution) -> dict:
    from app.runtime.schemas import ExecutionEventSchema

    return ExecutionEventSchema().dump(row)


def _recorded(claim: jobs.Claim, outcome: jobs.Outcome, state) -> None:
    finish: Finish | None = outcome.detail
    if finish is None:
        if outcome.result == jobs.SUCCEEDED:
            return  # nothing ran: it had already ended
        finish = Finish(FAILED, error=outcome.error or "the execution stopped", code=INTERNAL)
    execution_id = claim.payload["execution"]
    now = utcnow()
    changed = (RuntimeExecution.update(
        status=finish.status, result=finish.result, error=finish.error, error_code=finish.code,
        tool_calls=json.dumps(finish.tool_calls, default=str), finished_at=now,
        cpu_ms=finish.cpu_ms, memory_bytes=finish.memory_bytes if finish.memory_bytes is not None
        else RuntimeExecution.memory_bytes)
        .where((RuntimeExecution.id == execution_id) & RuntimeExecution.status.in_(UNFINISHED)).execute())
    if not changed:
        return  # cancelled or timed out by its caller meanwhile: that state stays
    row = RuntimeExecution.get_by_id(execution_id)
    if row.agent_id:
        RuntimeAgent.update(last_activity_at=now).where(RuntimeAgent.id == row.agent_id).execute()
        if finish.memory_entry:
            open_memory(state.settings.get("memory.backend")).save(row.id, memory_user(row.agent_id), MEMORY_SEQ,
                                                                   finish.memory_entry)
    topic = "agent.execution.completed" if finish.status == COMPLETED else "agent.execution.failed"
    events.publish(topic, finished_payload(row))
    if finish.status != COMPLETED:
        log.info("execution %s %s: %s", execution_id, finish.status, finish.error)


KIND = jobs.Kind(
    name=KIND_NAME,
    handler=handle,
    limits=limits,
    on_attempt=_recorded,
    on_failure=lambda claim, outcome, state: False,  # an execution that failed is not run again
)


def sweep_once(settings) -> None:
    days = settings.get("runtime.retention_days")
    if days > 0:
        # Deleting a finished job deletes its execution with it.
        removed = jobs.sweep(KIND_NAME, utcnow() - timedelta(days=days))
        if removed:
            log.debug("retention removed %d finished executions", removed)


def start(state) -> None:
    """The (singleton) retention sweep; executions run in the worker's job pool (the area declares KIND)."""
    run_singleton("runtime-retention", lambda: RETENTION_INTERVAL_SECS, lambda: sweep_once(state.settings))
