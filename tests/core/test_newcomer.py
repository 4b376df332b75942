"""What a new user meets first: the README's commands, the first token, and mistyped URLs.

The README's walkthrough is run as written, with bash and curl, against a real gunicorn, so the
first ten minutes stay true as the service changes.
"""

import http.client
import os
import re
import shlex
import subprocess
import tomllib

import pytest

from app.areas import AREAS
from app.cli.auth import NEW_ADMIN_TOKEN
from app.core.settings import SCHEMA, load_settings, validate
from tests.support.server import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
FLASK = [".venv/bin/flask", "--app", "wsgi"]

EMPTY_SEGMENT_PATHS = [
    ("POST", "/api/v1/sessions//messages"),
    ("GET", "/api/v1/sessions//messages"),
    ("GET", "/api/v1/sessions/"),
    ("DELETE", "/api/v1/hooks/"),
    ("GET", "/api/v1//status"),
]


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json["error"]["code"] == code
    return response.json["error"]


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def walkthrough() -> str:
    (block,) = [block for block in shell_blocks(README) if "SESSION_ID=$(" in block]
    return block


# ---- an empty path segment --------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), EMPTY_SEGMENT_PATHS)
def test_a_path_with_an_empty_segment_is_a_404_that_says_so(client, auth, method, path):
    response = client.open(path, method=method, headers=auth("admin"), json={"content": "hello"})
    error = error_of(response, 404, "not_found")
    assert "empty segment" in error["message"]
    assert error["details"] == {"path": path, "reason": "empty path segment"}


def test_other_unknown_paths_and_methods_keep_their_answers(client, auth):
    assert error_of(client.get("/api/v1/nowhere", headers=auth("read")), 404, "not_found")["message"] == (
        "No such endpoint")
    error = error_of(client.put("/api/v1/status", headers=auth("admin")), 405, "method_not_allowed")
    assert "GET" in error["details"]["allowed"]


def test_gunicorn_answers_an_empty_segment_with_the_json_404(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for method, path in (("POST", "/api/v1/sessions//messages"), ("GET", "/api/v1//status")):
            connection.request(method, path, body=b'{"content": "hello"}',
                               headers={**server.headers("write"), "Content-Type": "application/json"})
            reply = connection.getresponse()
            body = reply.read().decode()
            assert reply.status == 404, body
            assert reply.getheader("Content-Type").startswith("application/json")
            assert '"code":"not_found"' in body and "empty segment" in body, body
    finally:
        connection.close()


# ---- the first token ---------------------------------------------------------------------------


def test_bootstrap_prints_a_token_once_then_a_command_that_works_verbatim(app):
    runner = app.test_cli_runner()
    with app.app_context():  # as the ``flask`` command provides it
        first, second, made = bootstrap_twice_then_the_hint(runner)
    assert first.exit_code == 0, first.output
    token = first.stdout.strip().splitlines()[-1]
    assert token.startswith("lgt_")
    assert second.exit_code == 0, second.output
    assert second.stdout == ""
    assert made.exit_code == 0, made.output
    new_token = made.stdout.strip().splitlines()[-1]
    client = app.test_client()
    for bearer in (token, new_token):
        assert client.patch("/api/v1/config", json={"agent.max_turns": 7},
                            headers={"Authorization": f"Bearer {bearer}"}).status_code == 200


def bootstrap_twice_then_the_hint(runner):
    first = runner.invoke(args=["auth", "bootstrap"])
    second = runner.invoke(args=["auth", "bootstrap"])
    (suggested,) = re.findall(r"`([^`]+)`", second.stderr)
    assert suggested == NEW_ADMIN_TOKEN
    words = shlex.split(suggested)
    assert words[:3] == FLASK and (ROOT / FLASK[0]).exists()
    return first, second, runner.invoke(args=words[3:])


# ---- the README, as written ------------------------------------------------------------------


def test_readme_walkthrough_runs_as_written_against_gunicorn(server_factory):
    server = server_factory()  # a fresh database, as on a first ``make run``
    bootstrap = server.flask("auth", "bootstrap")
    token = bootstrap.stdout.strip().splitlines()[-1]
    assert "First admin token" in bootstrap.stderr
    env = {**os.environ, "BASE": server.url, "TOKEN": token}
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", walkthrough()], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr + run.stdout
    out = run.stdout
    assert '"error"' not in out, out
    assert re.search(r"^sess_\w+$", out, flags=re.MULTILINE), out
    assert '"echo: hello"' in out
    assert "Tool current_time returned" in out
    assert '"total":4}' in out, out  # the transcript: both messages and both answers


def test_readme_base_and_token_match_the_service_defaults():
    port = SCHEMA["gateway"]["port"].default
    assert f"export BASE=http://127.0.0.1:{port}\n" in README
    assert "export TOKEN=lgt_" in README
    assert f"serves on http://127.0.0.1:{port}" in README


def test_readme_port_change_writes_a_valid_config(tmp_path):
    (line,) = [line for block in shell_blocks(README) for line in block.splitlines() if "> lockgate.toml" in line]
    command = line.split("#", 1)[0]
    subprocess.run(["bash", "-euc", command], cwd=tmp_path, check=True, timeout=30)
    port = load_settings(tmp_path / "lockgate.toml").get("gateway.port")
    assert f"export BASE=http://127.0.0.1:{port}\n" in README
    assert port != SCHEMA["gateway"]["port"].default


@pytest.mark.parametrize("page", ["README.md", "docs/operations.md"])
def test_documented_commands_use_the_virtualenvs_flask(page):
    # A bare ``flask`` may be another installation's, which cannot load the app.
    blocks = shell_blocks((ROOT / page).read_text(encoding="utf-8"))
    commands = [prefix for block in blocks for prefix in re.findall(r"(\S*)flask --app", block)]
    assert commands
    assert all(prefix.endswith(".venv/bin/") for prefix in commands), commands


def test_readme_config_example_uses_only_real_keys():
    (example,) = re.findall(r"^```toml\n(.*?)^```$", README, flags=re.DOTALL | re.MULTILINE)
    tables = tomllib.loads(example)
    validate(tables)  # raises on an unknown key or a bad value
    for key in ("rate_limits.probes", "rate_limits.enabled", "gateway.max_body_bytes", "hooks.retry_schedule"):
        section, name = key.split(".")
        assert name in tables[section], key


# How the README names an area; any other area is looked for by its own name.
README_NAMES = {"agent": "agent loop", "config": "configuration", "hooks": "webhooks"}


def test_readme_says_of_every_area_whether_it_works_yet():
    overview = README.split("## What works today\n", 1)[1].split("\n## ", 1)[0].lower()
    assert "\nnot yet:\n" in overview, "README.md's 'What works today' section ends with its 'Not yet:' list"
    for area in AREAS:
        name = README_NAMES.get(area, area.replace("_", " "))
        assert name in overview, f"README.md's 'What works today' (or 'Not yet') should mention the {area} area"
