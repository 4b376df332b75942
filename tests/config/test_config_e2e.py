"""Configuration over HTTP and the command line against real gunicorn processes with two workers:
redaction, hot reload in every worker, and a bad file stopping start-up."""

import pytest
import requests

from tests.support.http import fresh_get

pytestmark = pytest.mark.e2e


def test_config_redaction_and_hot_reload_in_every_worker(server_factory):
    server = server_factory({
        "provider": {"api_key": "sk-very-secret"},
        "channels_config": {"telegram": {"bot_token": "123:abc", "allowed_users": ["42"], "api_url": "http://127.0.0.1:9"}},
    })
    headers = server.headers("admin")
    config = fresh_get(f"{server.url}/api/v1/config", headers=headers).json()
    assert config["provider"]["api_key"] == "***REDACTED***"
    assert config["channels_config"]["telegram"] == {"bot_token": "***REDACTED***", "allowed_users": ["42"],
                                                   "api_url": "http://127.0.0.1:9"}
    assert "sk-very-secret" not in str(config) and "123:abc" not in str(config)

    result = requests.patch(f"{server.url}/api/v1/config", headers=headers, json={
        "agent.max_turns": 77, "memory.top_k": 15, "provider.api_key": "***REDACTED***"})
    assert result.json() == {"updated": ["agent.max_turns", "memory.top_k"], "reload_required": False}
    seen = {fresh_get(f"{server.url}/api/v1/config", headers=headers).json()["agent"]["max_turns"]
            for _ in range(12)}
    assert seen == {77}
    text = server.config_path.read_text()
    assert "sk-very-secret" in text and "written by the test suite" in text

    result = requests.patch(f"{server.url}/api/v1/config", headers=headers, json={"gateway.port": 1})
    assert result.json() == {"updated": ["gateway.port"], "reload_required": True}


def test_config_show_cli_redacts(server_factory):
    server = server_factory({"provider": {"api_key": "sk-cli-secret"}, "auth": {"default_token_expiry_days": 2}})
    server.flask("auth", "token", "--name", "short-lived", "--scope", "read")
    listing = next(line for line in server.flask("auth", "list").stdout.splitlines() if "short-lived" in line)
    assert "never" not in listing and "active" in listing
    out = server.flask("config", "show").stdout
    assert "***REDACTED***" in out and "sk-cli-secret" not in out
    assert "m0001_platform" in server.flask("db", "status").stdout


def test_bad_config_stops_startup_with_a_message(tmp_path):
    import subprocess
    import sys

    from tests.support.server import ROOT

    path = tmp_path / "lockgate.toml"
    path.write_text("[gateway]\nport = 3999\n[agent]\nmax_turns = -5\n")
    env = {"LOCKGATE_CONFIG": str(path), "LOCKGATE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for command in (["-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                    ["-m", "flask", "--app", "wsgi", "db", "status"]):
        result = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode != 0
        assert "agent.max_turns" in result.stderr and "line 4" in result.stderr
        assert "Traceback" not in result.stderr
