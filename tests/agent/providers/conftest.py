import pytest

from app.agent.providers import ProviderSettings, create_provider
from tests.agent.providers.fake_llm import FakeLLMServer


@pytest.fixture
def fake_llm():
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def make_provider(fake_llm):
    """Build a provider pointed at the fake server; keyword arguments override
    the settings. Retry waits are tiny so failure tests stay fast."""

    def make(name: str, **overrides):
        values = {
            "name": name,
            "model": f"{name}-test-model",
            # OpenAI-compatible base URLs include the version, Anthropic's does not.
            "base_url": fake_llm.url + ("/v1" if name == "openai" else ""),
            "api_key": "sk-test-secret-key",
            "timeout": 5.0,
            "max_retries": 2,
            "retry_backoff": 0.01,
            "max_tokens": 256,
        }
        values.update(overrides)
        return create_provider(ProviderSettings(**values))

    return make
