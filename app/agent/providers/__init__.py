"""LLM providers for the agent loop.

`create_provider(settings)` returns the provider named by `settings.name`:
"echo" (offline, the default), "openai" (any OpenAI-compatible server) or
"anthropic". All of them speak the types defined in `base`.
"""

from .base import (
    Completion,
    Message,
    Provider,
    ProviderError,
    ProviderSettings,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
    create_provider,
)

__all__ = [
    "Completion",
    "Message",
    "Provider",
    "ProviderError",
    "ProviderSettings",
    "TextDelta",
    "ToolCall",
    "ToolSpec",
    "Usage",
    "create_provider",
]
