"""Webhook delivery: timeouts, retries, concurrency, retention."""

from app.core.fields import Field

SECTIONS = {
    "hooks": {
        "allow_private_targets": Field("bool", False,
            help="Lets webhooks target loopback and private addresses (refused by default)."),
        "timeout_secs": Field("float", 10.0, minimum=0.1, maximum=300, help="Seconds one delivery attempt may take."),
        "retry_schedule": Field("durations", ["5s", "30s", "2m", "10m", "1h", "6h"],
            help="Waits between a failed delivery's attempts; after the last one it is given up."),
        "disable_after_failures": Field("int", 20, minimum=1, maximum=1_000_000,
            help="Consecutive failed deliveries after which a hook is disabled."),
        "poll_interval_secs": Field("float", 0.25, minimum=0.01, maximum=60,
            help="How often each worker looks for deliveries that are due."),
        "max_concurrency": Field("int", 32, minimum=1, maximum=10_000,
            help="Deliveries in flight per worker."),
        "max_in_flight_per_hook": Field("int", 8, minimum=1, maximum=10_000,
            help="Deliveries in flight to one hook, across all workers."),
        "retention_days": Field("float", 7.0, minimum=0, maximum=36_500,
            help="Days finished deliveries are kept; 0 keeps them."),
    },
}
