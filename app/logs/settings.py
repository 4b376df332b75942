"""Stored logs: level, retention, streams."""

from app.core.fields import Field

SECTIONS = {
    "logs": {
        "level": Field("str", "info", choices=("trace", "debug", "info", "warn", "error"),
            help="Lowest level of the records stored and streamed."),
        "retention_days": Field("float", 7.0, minimum=0, maximum=36_500,
            help="Days log records are kept; 0 keeps them (max_entries still applies)."),
        "max_entries": Field("int", 100_000, minimum=100, maximum=1_000_000_000,
            help="Log records kept at most; the oldest go first."),
        "heartbeat_secs": Field("float", 15.0, minimum=0.1, maximum=3600,
            help="Comment line sent on an idle log stream to keep proxies from closing it."),
        "sweep_interval_secs": Field("float", 60.0, minimum=0.1, maximum=86_400,
            help="How often old log records are removed."),
    },
}
