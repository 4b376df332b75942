"""LLM providers for the agent loop, and the registry that picks one by name.

The registry lives here, not in ``base``: the provider modules import ``base``
for the shared types, so ``base`` must import none of them. All providers
speak the types defined in ``base``.
"""

from .anthropic import AnthropicProvider
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
)
from .echo import EchoProvider
from .openai import OpenAIProvider

# "echo" (offline, the default), "openai" (any OpenAI-compatible server), "anthropic".
PROVIDERS: dict[str, type[Provider]] = {cls.name: cls for cls in (EchoProvider, OpenAIProvider, AnthropicProvider)}


def create_provider(settings: ProviderSettings) -> Provider:
    """The provider ``settings.name`` names (case and surrounding spaces ignored)."""
    provider_class = PROVIDERS.get(settings.name.strip().lower())
    if provider_class is None:
        expected = ", ".join(PROVIDERS)
        raise ProviderError(f"unknown provider {settings.name!r}; expected one of: {expected}")
    return provider_class(settings)


__all__ = [
    "PROVIDERS",
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
