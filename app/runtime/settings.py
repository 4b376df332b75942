"""The runtime API: how long executions and workflows may take, who may call it, and its rate-limit groups."""

from app.core.fields import Field

HOUR = 3600

SECTIONS = {
    "runtime": {
        "workflow_timeout_secs": Field("float", 60.0, minimum=0.1, maximum=HOUR,
            help="Seconds POST /api/v1/workflows/execute waits for its run before answering 504."),
        "require_auth_everywhere": Field("bool", False,
            help="Makes health, metrics and workflow execution need a bearer token too (read, read, write)."),
        "default_timeout_secs": Field("float", 300.0, minimum=0.1, maximum=24 * HOUR,
            help="Bound of an execution whose agent sets no `with timeout`."),
        "max_timeout_secs": Field("float", float(HOUR), minimum=0.1, maximum=24 * HOUR,
            help="Longest bound an agent's `with timeout` may ask for; longer ones are cut to it."),
        "max_dsl_bytes": Field("int", 65_536, minimum=1_024, maximum=262_144,
            help="Largest DSL source accepted for an agent or a workflow."),
        "max_attempts": Field("int", 3, minimum=1, maximum=100,
            help="Times an execution is started before it is failed, when workers die while running it."),
        "claim_secs": Field("float", 30.0, minimum=0.5, maximum=HOUR,
            help="How long a worker holds an execution without renewing: a dead worker's is retried after it."),
        "max_concurrency": Field("int", 16, minimum=1, maximum=10_000,
            help="Executions running at once per worker."),
        "max_in_flight_per_agent": Field("int", 4, minimum=1, maximum=10_000,
            help="Executions of one agent running at once, across all workers."),
        "poll_interval_secs": Field("float", 0.1, minimum=0.01, maximum=60,
            help="How often each worker looks for queued executions."),
        "retention_days": Field("float", 30.0, minimum=0, maximum=36_500,
            help="Days finished executions stay in the agents' history; 0 keeps them."),
    },
    "rate_limits": {
        "runtime_read": Field("limit", "50/s", help="Limit of reading agents, their status and history, and metrics."),
        "runtime_write": Field("limit", "10/s", help="Limit of creating, changing, deleting and executing agents."),
        "runtime_run": Field("limit", "5/s",
            help="Limit of POST /api/v1/workflows/execute, per token or, without one, per client address."),
    },
}
