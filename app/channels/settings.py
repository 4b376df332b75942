"""Channels: one free-form table per channel, and how connections are kept up and measured."""

from app.core.fields import OPEN, Field

SECTIONS = {
    # One table per channel: [channels_config.telegram], [channels_config.discord], ...
    # Each table's keys are checked by its channel type (app.channels.config).
    "channels_config": OPEN,
    "channels": {
        "reconnect_first_secs": Field("float", 1.0, minimum=0.05, maximum=3600,
            help="Wait before reconnecting a channel after its first failure; doubled after each next one."),
        "reconnect_max_secs": Field("float", 60.0, minimum=0.1, maximum=86_400,
            help="Longest wait between two reconnection attempts (each wait is jittered by ±20%)."),
        "circuit_after_failures": Field("int", 8, minimum=1, maximum=1_000_000,
            help="Consecutive failed connections after which a channel waits circuit_open_secs between attempts."),
        "circuit_open_secs": Field("float", 300.0, minimum=0.1, maximum=86_400,
            help="Wait between attempts while a channel's circuit breaker is open."),
        "health_interval_secs": Field("float", 30.0, minimum=0.1, maximum=86_400,
            help="How often the worker holding a channel measures its round trip to the platform."),
        "max_concurrent_turns": Field("int", 32, minimum=1, maximum=10_000,
            help="Channel messages answered at once per worker (one at a time per chat)."),
        "turn_claim_secs": Field("float", 30.0, minimum=1, maximum=3600,
            help="How long a worker answering a channel message holds it without renewing."),
    },
    "rate_limits": {
        "channels_read": Field("limit", "50/s", help="Limit of listing channels and reading their health."),
        "channels_write": Field("limit", "10/s", help="Limit of restarting channels."),
        "channels_inbound": Field("limit", "100/s", help="Limit of messages posted to webhook channels."),
    },
}
