"""[mcp] servers: free-form tables inside a declared section (the settings' ``tables`` kind)."""

from __future__ import annotations

import pytest

from app.core.config_reference import render
from app.core.settings import ConfigError, Settings, check_patch, is_secret_key, validate, write_changes
from app.mcp.config import ConfigProblem, parse
from tests.support.config import write_config

SERVERS = {
    "fs": {"transport": "stdio", "command": "mcp-fs", "args": ["--root", "/srv"], "env": {"PLAIN": "x"}},
    "keycloak": {"transport": "http", "url": "https://mcp.example.com/mcp",
                 "headers": {"X-Custom": "opaque", "Authorization": "Bearer abc"}},
}


@pytest.fixture
def settings(tmp_path):
    return Settings(write_config(tmp_path / "lockgate.toml", {"mcp": {"servers": SERVERS, "timeout_secs": 5.0}}))


def test_server_tables_are_read_with_the_declared_keys_beside_them(settings):
    assert settings.get("mcp.timeout_secs") == 5.0
    assert settings.get("mcp.servers.fs.args") == ["--root", "/srv"]
    assert settings.get("mcp.servers.fs.cwd", "none") == "none"  # absent inside a table: the default answers
    assert settings.get("mcp.servers.nothing.url") is None
    with pytest.raises(KeyError):
        settings.get("mcp.no_such_key")


def test_a_servers_value_that_is_not_tables_is_refused():
    with pytest.raises(ConfigError, match="mcp.servers: expected one table per name"):
        validate({"mcp": {"servers": {"fs": "mcp-fs"}}})
    with pytest.raises(ConfigError, match="mcp.servers: fs.timeout_secs: expected a finite number"):
        validate({"mcp": {"servers": {"fs": {"timeout_secs": float("inf")}}}})


def test_headers_and_env_are_hidden_whatever_their_names_and_server_names_are_not(settings):
    shown = settings.redacted()["mcp"]["servers"]
    assert shown["keycloak"]["headers"] == {"X-Custom": "***REDACTED***", "Authorization": "***REDACTED***"}
    assert shown["keycloak"]["url"] == "https://mcp.example.com/mcp"
    assert shown["fs"]["env"] == {"PLAIN": "***REDACTED***"}
    assert shown["fs"]["command"] == "mcp-fs"
    assert is_secret_key("mcp.servers.keycloak.headers.X-Custom")
    assert not is_secret_key("mcp.servers.keycloak.url")


def test_patching_a_server_key_writes_it_and_keeps_masked_headers(settings):
    to_write, errors = check_patch({"mcp.servers.fs.timeout_secs": 5, "mcp.servers.new.transport": "http",
                                    "mcp.servers.keycloak.headers.X-Custom": "***REDACTED***"}, settings)
    assert errors == {}
    assert to_write == {"mcp.servers.fs.timeout_secs": 5, "mcp.servers.new.transport": "http"}
    write_changes(settings.path, to_write)
    settings.refresh()
    assert settings.get("mcp.servers.fs.timeout_secs") == 5
    assert settings.get("mcp.servers.new.transport") == "http"
    assert settings.get("mcp.servers.keycloak.headers.X-Custom") == "opaque"


def test_what_a_stdio_server_runs_can_be_set_only_in_the_file(settings):
    _, errors = check_patch({"mcp.servers.fs.command": "/bin/sh", "mcp.servers.new.args": ["-c", "id"],
                             "mcp.servers.fs.env.LD_PRELOAD": "/tmp/x.so", "mcp.servers.fs.cwd": "/",
                             "mcp.servers": {"evil": {"transport": "stdio", "command": "/bin/sh"}}}, settings)
    assert errors == {
        "mcp.servers.fs.command": ["mcp.servers.fs.command can be set only in the configuration file"],
        "mcp.servers.new.args": ["mcp.servers.new.args can be set only in the configuration file"],
        "mcp.servers.fs.env.LD_PRELOAD": ["mcp.servers.fs.env can be set only in the configuration file"],
        "mcp.servers.fs.cwd": ["mcp.servers.fs.cwd can be set only in the configuration file"],
        "mcp.servers": ["set its keys one by one (mcp.servers.<name>.<key>)"],
    }


def test_patching_inside_a_value_or_without_a_key_is_refused(settings):
    _, errors = check_patch({"mcp.servers.keycloak.url.deeper": "x", "mcp.servers.fs": "x",
                             "mcp.servers.fs.tags": [{"no": "tables"}]}, settings)
    assert errors == {
        "mcp.servers.keycloak.url.deeper": ["mcp.servers.keycloak.url is a value, not a table: it cannot hold keys"],
        "mcp.servers.fs": ["expected mcp.servers.<name>.<key>"],
        "mcp.servers.fs.tags": ["expected a string, number, boolean, or a list of those"],
    }


def test_the_configuration_reference_names_the_tables_kind_and_its_secret_keys():
    page = render()
    assert "| `servers` | `tables` | `{}` |" in page
    assert "`headers`, `env`" in page


def test_a_server_table_is_checked_by_the_area():
    config = parse("fs", SERVERS["fs"])
    assert (config.command, config.args, config.env, config.registry_name("read")) == (
        "mcp-fs", ("--root", "/srv"), {"PLAIN": "x"}, "fs__read")
    assert parse("fs", {**SERVERS["fs"], "tool_prefix": "files"}).registry_name("read") == "files__read"
    problems = {
        "transport": ({"transport": "ftp"}, "mcp.servers.x.transport: expected one of stdio, http"),
        "unknown key": ({"transport": "stdio", "command": "c", "url": "u"}, "unknown key(s) for transport stdio: url"),
        "no command": ({"transport": "stdio"}, "mcp.servers.x.command: required"),
        "timeout": ({"transport": "http", "url": "u", "timeout_secs": 0}, "timeout_secs: expected a number"),
        "args": ({"transport": "stdio", "command": "c", "args": "--x"}, "args: expected a list of strings"),
        "headers": ({"transport": "http", "url": "u", "headers": {"X": 1}}, "headers: expected a table of strings"),
        "prefix": ({"transport": "http", "url": "u", "tool_prefix": "a.b"}, "tool_prefix: letters"),
        "enabled": ({"transport": "http", "url": "u", "enabled": "no"}, "enabled: expected true or false"),
    }
    for table, message in problems.values():
        with pytest.raises(ConfigProblem, match=message.replace("(", r"\(").replace(")", r"\)")):
            parse("x", table)
