import pytest

from app.core.settings import (
    REDACTED,
    ConfigError,
    Settings,
    check_patch,
    parse_limit,
    redact,
    write_changes,
)


def test_defaults_without_a_file(tmp_path):
    settings = Settings(tmp_path / "absent.toml")
    assert settings.get("gateway.port") == 3120
    assert settings.get("gateway.host") == "127.0.0.1"
    assert settings.get("agent.max_turns") == 50
    assert settings.get("agent.max_tool_calls_per_turn") == 10
    assert settings.get("agent.session_timeout_secs") == 3600
    assert settings.get("memory.backend") == "sqlite"
    assert settings.get("provider.name") == "echo"


def test_bad_value_names_key_and_line(tmp_path):
    path = tmp_path / "lockgate.toml"
    path.write_text('# comment\n[gateway]\nhost = "0.0.0.0"\n\n[agent]\nmax_turns = "many"\n')
    with pytest.raises(ConfigError) as caught:
        Settings(path)
    assert "agent.max_turns" in str(caught.value)
    assert "line 6" in str(caught.value)


def test_unknown_key_and_section_are_refused(tmp_path):
    path = tmp_path / "lockgate.toml"
    path.write_text("[agent]\nmax_turn = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key agent.max_turn \(line 2\)"):
        Settings(path)
    path.write_text("[nonsense]\na = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section \[nonsense\] \(line 1\)"):
        Settings(path)


def test_syntax_error_reports_line(tmp_path):
    path = tmp_path / "lockgate.toml"
    path.write_text("[agent]\nmax_turns = = 3\n")
    with pytest.raises(ConfigError, match="line 2"):
        Settings(path)


def test_redaction_at_any_depth():
    data = {
        "provider": {"api_key": "sk-live", "max_tokens": 10},
        "channels_config": {"telegram": {"bot_token": "123:abc", "allowed_users": ["1"]},
                            "matrix": {"accounts": [{"password": "hunter2", "user": "bot"}]}},
        "auth": {"default_token_expiry_days": 3},
        "hooks": {"webhook_secret": ""},
    }
    shown = redact(data)
    assert shown["provider"] == {"api_key": REDACTED, "max_tokens": 10}
    assert shown["channels_config"]["telegram"] == {"bot_token": REDACTED, "allowed_users": ["1"]}
    assert shown["channels_config"]["matrix"]["accounts"] == [{"password": REDACTED, "user": "bot"}]
    assert shown["auth"]["default_token_expiry_days"] == 3
    assert shown["hooks"]["webhook_secret"] == ""  # nothing to hide
    assert data["provider"]["api_key"] == "sk-live"  # the original is untouched


def test_check_patch_validates_each_key(tmp_path):
    settings = Settings(tmp_path / "absent.toml")
    to_write, errors = check_patch(
        {"agent.max_turns": 100, "memory.top_k": "x", "nope.key": 1, "rate_limits.default": "5/m",
         "rate_limits.config_write": "fast", "provider.api_key": REDACTED,
         "channels_config.telegram.bot_token": "t", "channels_config.telegram": 3,
         "hooks.retry_schedule": ["5s", "soon"], "hooks.timeout_secs": 0},
        settings,
    )
    assert to_write == {"agent.max_turns": 100, "rate_limits.default": "5/m",
                        "channels_config.telegram.bot_token": "t"}
    assert set(errors) == {"memory.top_k", "nope.key", "rate_limits.config_write", "channels_config.telegram",
                           "hooks.retry_schedule", "hooks.timeout_secs"}
    _, errors = check_patch({"hooks.retry_schedule": ["1s", "0s"]}, settings)
    assert "positive" in errors["hooks.retry_schedule"][0]


def test_write_changes_keeps_comments_and_reloads(tmp_path):
    path = tmp_path / "lockgate.toml"
    path.write_text("# operator notes\n[agent]\n# keep short\nmax_turns = 5\n")
    settings = Settings(path)
    write_changes(path, {"agent.max_turns": 9, "memory.top_k": 2, "channels_config.tg.bot_token": "x"})
    text = path.read_text()
    assert "# operator notes" in text and "# keep short" in text
    assert settings.refresh() is True
    assert settings.get("agent.max_turns") == 9
    assert settings.get("memory.top_k") == 2
    assert settings.get("channels_config.tg.bot_token") == "x"
    assert settings.refresh() is False


def test_a_broken_edit_keeps_the_last_good_config(tmp_path):
    path = tmp_path / "lockgate.toml"
    path.write_text("[agent]\nmax_turns = 5\n")
    settings = Settings(path)
    path.write_text("[agent]\nmax_turns = [\n")
    settings.refresh()
    assert settings.get("agent.max_turns") == 5


@pytest.mark.parametrize("text,expected", [
    ("10/s", (10, 1)), ("100/min", (100, 60)), ("20/5s", (20, 5)), ("3/h", (3, 3600)), ("7 / 2 m", (7, 120)),
])
def test_parse_limit(text, expected):
    assert parse_limit(text) == expected


@pytest.mark.parametrize("text", ["", "ten/s", "10", "10/fortnight", "-1/s"])
def test_parse_limit_rejects(text):
    with pytest.raises(ValueError):
        parse_limit(text)
