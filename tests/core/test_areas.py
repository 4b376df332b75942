"""The area declarations: one list drives settings, routes, events, status and rate-limit groups."""

import sys
import types

import pytest

from app.core import areas as core_areas
from app.core.fields import OPEN, Field
from app.core.settings import SCHEMA, Settings, assemble_schema


def _settings_module(monkeypatch, name, sections):
    module = types.ModuleType(f"app.{name}.settings")
    module.SECTIONS = sections
    monkeypatch.setitem(sys.modules, f"app.{name}", types.ModuleType(f"app.{name}"))
    monkeypatch.setitem(sys.modules, f"app.{name}.settings", module)


def test_areas_contribute_keys_to_shared_sections():
    # Core declares [rate_limits] default/probes; sessions and config add their groups.
    assert {"default", "probes", "sessions_read", "sessions_write", "config_write"} <= set(SCHEMA["rate_limits"])
    assert SCHEMA["hooks"]["max_concurrency"].default == 32
    assert SCHEMA["channels_config"] is OPEN


def test_a_key_declared_twice_fails_loudly(monkeypatch):
    _settings_module(monkeypatch, "dup", {"rate_limits": {"default": Field("limit", "1/s")}})
    with pytest.raises(RuntimeError, match="declared twice: default"):
        assemble_schema(("sessions", "dup"))


def test_a_new_area_adds_a_section(monkeypatch):
    _settings_module(monkeypatch, "extra", {"extra": {"knob": Field("int", 3)}})
    schema = assemble_schema(("extra",))
    assert schema["extra"]["knob"].default == 3
    assert "hooks" not in schema  # only the areas named


def test_an_area_without_settings_is_fine():
    assert "agent" in assemble_schema(("agent", "status"))  # status has no settings module


def test_get_refuses_unknown_keys(tmp_path):
    settings = Settings(tmp_path / "missing.toml")
    assert settings.get("hooks.max_concurrency") == 32
    with pytest.raises(KeyError, match="hooks.nope"):
        settings.get("hooks.nope")
    with pytest.raises(KeyError, match="nosection.key"):
        settings.get("nosection.key")
    # Free-form sections may lack a key: the default answers.
    assert settings.get("channels_config.telegram.bot_token", "x") == "x"


def test_event_topics_come_from_the_declarations():
    from app.hooks import catalogue

    topics = core_areas.event_topics()
    assert {"session.created", "message.sent", "config.updated", "hook.disabled"} <= set(topics)
    assert list(catalogue.EVENTS) == list(topics)


def test_a_topic_declared_twice_fails(monkeypatch):
    twice = (core_areas.Area("a", events={"x.y": "one"}), core_areas.Area("b", events={"x.y": "two"}))
    monkeypatch.setattr(core_areas, "areas", lambda: twice)
    with pytest.raises(RuntimeError, match="x.y"):
        core_areas.event_topics()


def test_every_route_counts_against_a_configured_group(app):
    from app.core.api import rate_group

    settings = app.extensions["lockgate"].settings
    groups = set()
    for rule in app.url_map.iter_rules():
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            group = rate_group(app, rule.endpoint, rule.rule, method)
            settings.get(f"rate_limits.{group}")  # raises for a group with no limit configured
            groups.add(group)
    assert {"default", "probes", "sessions_read", "sessions_write", "config_write"} <= groups


def test_every_declared_blueprint_is_served(app):
    served = set(app.blueprints)
    for area in core_areas.areas():
        for blueprint in area.blueprints:
            assert blueprint.name in served


def test_status_merges_area_contributions(client, auth):
    body = client.get("/api/v1/status", headers=auth("read")).get_json()
    assert body["active_sessions"] == 0
    client.post("/api/v1/sessions", json={}, headers=auth("write"))
    assert client.get("/api/v1/status", headers=auth("read")).get_json()["active_sessions"] == 1
