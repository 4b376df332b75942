"""Configuration of the agent loop, the model provider and memory."""

from app.core.fields import Field

YEAR_SECS = 365 * 86_400

SECTIONS = {
    "agent": {
        "max_turns": Field("int", 50, minimum=1, maximum=100_000,
            help="Messages a session accepts; the next one gets 409 conflict."),
        "max_tool_calls_per_turn": Field("int", 10, minimum=0, maximum=1_000,
            help="Tool calls the model may make while answering one message."),
        "session_timeout_secs": Field("int", 3600, minimum=1, maximum=YEAR_SECS,
            help="A session without activity for this long is terminated."),
        "idle_after_secs": Field("int", 300, minimum=1, maximum=YEAR_SECS,
            help="A session without activity for this long becomes idle (reactivated by its next message)."),
        "system_prompt": Field("str", "You are a helpful assistant.",
            help="Instructions sent to the model at the start of every conversation."),
        "sweep_interval_secs": Field("float", 5.0, minimum=0.1, maximum=3600,
            help="How often sessions are checked for idling and timeout."),
        # A turn holds its session's lock this long past its worker's last sign
        # of life, so a killed worker blocks the session for at most this.
        "lock_ttl_secs": Field("float", 10.0, minimum=1.0, maximum=3600,
            help="How long a turn's session lock outlives its worker's last sign of life."),
        # How long a message waits for the session's previous turn before a 409.
        "lock_wait_secs": Field("float", 120.0, minimum=0, maximum=3600,
            help="How long a message waits for the session's previous turn before 409 conflict."),
    },
    "memory": {
        "backend": Field("str", "sqlite", hot=False, choices=("sqlite", "none"),
            help="Where memories are kept: sqlite (the service's database) or none."),
        "top_k": Field("int", 5, minimum=0, maximum=1_000,
            help="Memories recalled into each turn and returned by memory_search by default."),
    },
    "provider": {
        "name": Field("str", "echo", choices=("echo", "openai", "anthropic"),
            help="Model provider: echo (built-in, offline), openai (any OpenAI-compatible server) or anthropic."),
        "model": Field("str", "echo-1", help="Model name sent to the provider."),
        "base_url": Field("str", "", help="Provider endpoint; empty: the provider's public API."),
        "api_key": Field("str", "", secret=True, help="Provider API key."),
        "timeout": Field("float", 60.0, minimum=0.1, maximum=3600, help="Seconds to wait for one provider response."),
        "max_retries": Field("int", 3, minimum=0, maximum=100,
            help="Retries of a provider call that failed with a network error, 408, 429 or 5xx."),
        "max_tokens": Field("int", 1024, minimum=1, maximum=1_000_000,
            help="Largest answer the model may produce, in tokens."),
    },
}
