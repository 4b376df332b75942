import pytest

from app.agent.providers import ProviderError, ProviderSettings, create_provider
from app.agent.providers.anthropic import AnthropicProvider
from app.agent.providers.base import parse_tool_arguments
from app.agent.providers.echo import EchoProvider
from app.agent.providers.openai import OpenAIProvider


def test_settings_defaults_select_the_echo_provider():
    settings = ProviderSettings()
    assert (settings.name, settings.model, settings.max_retries) == ("echo", "echo-1", 3)
    assert isinstance(create_provider(settings), EchoProvider)


def test_from_mapping_coerces_types_and_ignores_unknown_keys():
    config = {"name": "openai", "timeout": "2.5", "max_retries": "5", "max_tokens": 300.0}
    settings = ProviderSettings.from_mapping({**config, "colour": "blue", "model": None})
    assert settings.name == "openai"
    assert settings.timeout == 2.5
    assert settings.max_retries == 5 and isinstance(settings.max_retries, int)
    assert settings.max_tokens == 300 and isinstance(settings.max_tokens, int)
    assert settings.model == "echo-1"  # None means "use the default"


def test_from_mapping_rejects_a_bad_value_without_echoing_it():
    with pytest.raises(ProviderError) as caught:
        ProviderSettings.from_mapping({"timeout": "sk-looks-like-a-key"})
    assert "timeout" in str(caught.value)
    assert "sk-looks-like-a-key" not in str(caught.value)


def test_settings_repr_hides_the_api_key():
    assert "sk-hidden" not in repr(ProviderSettings(api_key="sk-hidden"))


@pytest.mark.parametrize(
    "name, expected",
    [
        ("echo", EchoProvider),
        ("openai", OpenAIProvider),
        ("anthropic", AnthropicProvider),
        (" OpenAI ", OpenAIProvider),
    ],
)
def test_create_provider_picks_the_class_by_name(name, expected):
    provider = create_provider(ProviderSettings(name=name))
    assert type(provider) is expected
    assert provider.name == expected.name


def test_create_provider_rejects_unknown_names():
    with pytest.raises(ProviderError) as caught:
        create_provider(ProviderSettings(name="gemini"))
    assert "gemini" in str(caught.value)
    assert caught.value.status is None


def test_default_and_custom_base_urls():
    assert OpenAIProvider(ProviderSettings()).url == "https://api.openai.com/v1/chat/completions"
    assert AnthropicProvider(ProviderSettings()).url == "https://api.anthropic.com/v1/messages"
    ollama = OpenAIProvider(ProviderSettings(base_url="http://localhost:11434/v1/"))
    assert ollama.url == "http://localhost:11434/v1/chat/completions"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ('{"path": "/tmp"}', {"path": "/tmp"}),
        ("", {}),
        ("   ", {}),
        ('{"path": "/tm', {"_raw": '{"path": "/tm'}),
        ("[1, 2]", {"_raw": "[1, 2]"}),
    ],
)
def test_parse_tool_arguments(raw, expected):
    assert parse_tool_arguments(raw) == expected
