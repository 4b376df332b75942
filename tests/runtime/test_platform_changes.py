"""The platform pieces the runtime needs: a run's deadline in the runner, and bearer tokens from the environment."""

import time
from pathlib import Path

import pytest

from app.agent import runner
from app.agent.loop import DeadlineExceeded
from app.agent.providers import ProviderSettings
from app.agent.tools import ToolRegistry
from app.core.auth import EnvToken, Principal, authenticate
from app.core.settings import load_settings
from tests.agent.scripted import ScriptedProvider, reply
from tests.runtime.conftest import tool

# The built-in defaults (no such file).
SETTINGS = load_settings(Path("/nonexistent/lockgate.toml"))
ME = runner.Identity(execution_id="exec-1")


def test_a_deadline_already_past_stops_the_run_before_the_model_is_asked():
    provider = ScriptedProvider(reply("never sent"))
    with pytest.raises(DeadlineExceeded):
        runner.answer(SETTINGS, runner.Conversation("hi"), ME, provider=provider, deadline=time.monotonic() - 1)
    assert provider.requests == []


def test_a_deadline_passed_during_a_tool_call_stops_before_the_next_step():
    registry = ToolRegistry()
    registry.register(tool("slow", lambda args, ctx: time.sleep(0.2) or "done"))
    provider = ScriptedProvider(reply(calls=[("slow", {}), ("slow", {})]), reply("too late"))
    with pytest.raises(DeadlineExceeded):
        runner.answer(SETTINGS, runner.Conversation("go"), ME, provider=provider, registry=registry,
                      deadline=time.monotonic() + 0.1)
    assert len(provider.requests) == 1  # the second call to the model never went out


def test_a_run_within_its_deadline_is_unchanged():
    provider = ScriptedProvider(reply("in time"))
    result = runner.answer(SETTINGS, runner.Conversation("hi"), ME, provider=provider,
                           deadline=time.monotonic() + 30)
    assert result.content == "in time"


def test_provider_requests_wait_no_longer_than_the_time_left(monkeypatch):
    built = []
    monkeypatch.setattr(runner, "create_provider", lambda settings: built.append(settings) or settings)
    runner.provider_for(SETTINGS, time.monotonic() + 2.0, model="echo-2")
    runner.provider_for(SETTINGS)
    assert isinstance(built[0], ProviderSettings) and 1.5 < built[0].timeout <= 2.0 and built[0].model == "echo-2"
    assert built[1].timeout == 60.0 and built[1].model == "echo-1"


# ---- tokens from the environment ------------------------------------------------------------

TOKEN = EnvToken("API_AUTH_TOKEN", "write", frozenset({"agents"}))


def test_an_env_token_is_accepted_only_when_set_and_equal():
    header = "Bearer deploy-secret"
    assert authenticate(header, env_tokens=[TOKEN], environ={}) is None
    assert authenticate(header, env_tokens=[TOKEN], environ={"API_AUTH_TOKEN": ""}) is None
    assert authenticate(header, env_tokens=[TOKEN], environ={"API_AUTH_TOKEN": "deploy-secreT"}) is None
    principal = authenticate(header, env_tokens=[TOKEN], environ={"API_AUTH_TOKEN": "deploy-secret"})
    assert principal == Principal("env:API_AUTH_TOKEN", "API_AUTH_TOKEN", ("write",), frozenset({"agents"}))


def test_an_env_token_grants_its_scope_on_its_blueprints_only():
    principal = TOKEN.principal("x", {"API_AUTH_TOKEN": "x"})
    assert principal.allows("read", "agents") and principal.allows("write", "agents")
    assert principal.refusal("admin", "agents") == "This endpoint needs the 'admin' scope"
    assert not principal.allows("read", "sessions")
    assert principal.refusal("read", None) == "This token is not valid here (only on: agents)"
    unrestricted = Principal("id", "name", ("read",))
    assert unrestricted.allows("read", "sessions") and not unrestricted.allows("write")


def test_an_env_token_must_name_a_known_scope():
    with pytest.raises(ValueError):
        EnvToken("X", "root", frozenset())
