"""WASM plugins and skills end to end: a real gunicorn with 2 workers, each loading every plugin directory.

The plugins are WAT modules built by the tests: the example weather tool, one that loops forever, one
that grows its memory without bound, one that grows by a page per call, one that counts for about a
couple of seconds (for reloading under a running call), one with a broken manifest, and one that brings a skill.
Agent turns in sessions call their tools through the tool registry; the echo provider's input word
count shows what a turn's system prompt held.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests
import wasmtime

from app.agent.providers.echo import count_words
from app.skills.service import BUILTIN_DIR, read_skill
from tests.plugins import wat
from tests.support.http import Api, fresh_get
from tests.support.server import RELAXED_LIMITS, serve
from tests.support.wait import wait_until

pytestmark = pytest.mark.e2e

LIMITS = {"rate_limits": {**RELAXED_LIMITS["rate_limits"], "plugins_read": "10000/s", "plugins_write": "10000/s",
                          "skills_read": "10000/s"}}
SLOW = 2_000_000_000  # about six seconds of counting: a reload under load is answered well within it
PLUGINS = {"weather", "spin", "hog", "grow", "slow", "broken", "productivity"}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, backend):
    root = tmp_path_factory.mktemp("plugin-dirs")
    plugins, skills = root / "plugins", root / "skills"
    wat.copy_example(plugins)
    wat.write_simple(plugins, "spin", "spin", wat.SPIN, resources={"max_execution_time_ms": 1500})
    wat.write_simple(plugins, "hog", "hog", wat.HOG, resources={"max_memory_mb": 8})
    wat.write_simple(plugins, "grow", "grow", wat.GROW_ONE_PAGE)
    wat.write_simple(plugins, "slow", "slow", wat.count_to(SLOW), '{"output":"v1"}', version="1.0.0")
    (plugins / "broken").mkdir()
    (plugins / "broken" / "plugin.toml").write_text('[plugin]\nname = "broken"\nversion = "1.0.0"\n'
                                                    '[[capabilities]]\ntype = "daemon"\nname = "x"\n')
    productivity = wat.write_simple(plugins, "productivity", "todo", skills=("standup",))
    wat.write_skill(productivity / "skills" / "standup", "standup", ["/standup"], "Report as a stand-up.")
    wat.write_skill(skills / "haiku", "haiku", ["/haiku", "in verse"], "Answer in a haiku.")
    return plugins, skills


@pytest.fixture(scope="module")
def server(tmp_path_factory, backend, dirs):
    plugins, skills = dirs
    config = {**LIMITS, "plugins": {"dir": str(plugins), "max_fuel": 10**12, "max_execution_time_ms": 30000},
              "skills": {"dir": str(skills)}, "memory": {"backend": "none"}}
    with serve(tmp_path_factory.mktemp("plugins"), backend, config) as instance:
        yield instance


@pytest.fixture
def api(server):
    client = Api(server)
    wait_until(lambda: every_worker_reports(client, server), 60, 0.2, "every worker loading every plugin")
    yield client
    client.close()


def plugins(api) -> dict:
    response = fresh_get(api.url("/plugins"), headers=api.headers)
    assert response.status_code == 200, response.text
    return {entry["name"]: entry for entry in response.json()["plugins"]}


def every_worker_reports(api, server, check=lambda entry: True):
    listed = plugins(api)
    workers = len(server.worker_pids())
    ready = set(listed) == PLUGINS and all(len(entry["workers"]) == workers and check(entry)
                                           for entry in listed.values())
    return listed if ready else None


def turn(api, content: str) -> dict:
    """One message in a new session, on a new connection (so either worker may answer it)."""
    session = api.new_session(channel="api", user_id="plugin-tester")
    response = api.send(session["id"], content)
    assert response.status_code == 200, response.text
    return response.json()


def reply(api, content: str) -> str:
    return turn(api, content)["content"]


def test_every_worker_loads_every_plugin(api, server):
    listed = plugins(api)
    weather = listed["weather"]
    assert (weather["status"], weather["version"], weather["capabilities"]) == ("loaded", "1.2.0",
                                                                                ["tool:get_weather"])
    assert weather["memory_usage_bytes"] == 65536
    assert listed["productivity"]["capabilities"] == ["tool:todo", "skill:standup"]
    broken = listed["broken"]
    assert broken["status"] == "error"
    assert broken["error"] == "[[capabilities]] #1: type must be one of tool, skill, not 'daemon'"
    assert all(worker["status"] == "error" for worker in broken["workers"])
    status = fresh_get(api.url("/status"), headers=api.headers).json()
    assert status["plugins"] == {"loaded": 6, "total": 7}


def test_an_agent_turn_calls_a_plugin_tool(api):
    for _ in range(4):  # fresh connections reach both workers
        text = reply(api, '/tool get_weather {"city": "Paris"}')
        assert text.startswith("Tool get_weather returned: ")
        assert '"forecast": "sunny"' in text and '"city": "Paris"' in text


def test_a_looping_plugin_is_stopped_and_the_worker_keeps_serving(api):
    answers = []
    caller = threading.Thread(target=lambda: answers.append(reply(api, "/tool spin {}")))
    began = time.monotonic()
    caller.start()
    slowest = 0.0
    while caller.is_alive():
        started = time.monotonic()
        assert fresh_get(api.url("/status/health")).status_code == 200
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.05)
    caller.join()
    assert answers == ["Tool spin returned: Error: the plugin spin was stopped: ran past its time limit of 1500 ms"]
    assert time.monotonic() - began >= 1.4
    assert slowest < 1.0  # no worker's hub was held by the spinning call
    assert "forecast" in reply(api, '/tool get_weather {"city": "Lima"}')


def test_a_plugin_that_grows_without_bound_is_stopped(api):
    text = reply(api, "/tool hog {}")
    assert text.startswith("Tool hog returned: Error: the plugin hog was stopped: reached its memory limit of 8 MiB")
    assert "forecast" in reply(api, '/tool get_weather {"city": "Quito"}')
    hog = plugins(api)["hog"]
    assert hog["status"] == "loaded"
    assert "reached its memory limit of 8 MiB" in hog["error"]


def test_memory_usage_follows_the_plugins_memory(api):
    before = plugins(api)["grow"]["memory_usage_bytes"]
    for _ in range(6):
        assert reply(api, "/tool grow {}") == "Tool grow returned: done"
    # Six pages over the workers: the larger instance grew by three at least.
    after = wait_until(lambda: plugins(api)["grow"]["memory_usage_bytes"] >= before + 3 * 65536 and plugins(api),
                       10, 0.2, "the grown memory reported")
    grown = sorted(worker["memory_usage_bytes"] for worker in after["grow"]["workers"])
    assert sum(grown) == 2 * before + 6 * 65536


def test_disable_and_enable_reach_every_worker(api, server):
    answer = api.post("/plugins/weather/disable")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"name": "weather", "status": "disabled"}
    wait_until(lambda: all(worker["status"] == "disabled" for worker in plugins(api)["weather"]["workers"]),
               10, 0.1, "every worker disabling weather")
    assert plugins(api)["weather"]["status"] == "disabled"
    for _ in range(4):
        assert reply(api, '/tool get_weather {"city": "Paris"}') == "echo: unknown tool get_weather"
    assert fresh_get(api.url("/status"), headers=api.headers).json()["plugins"] == {"loaded": 5, "total": 7}

    answer = api.post("/plugins/weather/enable")
    assert answer.json() == {"name": "weather", "status": "loaded"}
    wait_until(lambda: all(worker["status"] == "loaded" for worker in plugins(api)["weather"]["workers"]),
               10, 0.1, "every worker enabling weather")
    for _ in range(4):
        assert "forecast" in reply(api, '/tool get_weather {"city": "Paris"}')


def test_reload_while_a_call_runs(api, server, dirs):
    plugin_dir, _ = dirs
    answers = []
    caller = threading.Thread(target=lambda: answers.append(reply(api, "/tool slow {}")))
    caller.start()
    time.sleep(0.3)
    wat.write_simple(plugin_dir, "slow", "slow", wat.count_to(1000), '{"output":"v2"}', version="2.0.0")
    answer = api.post("/plugins/slow/reload")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"name": "slow", "status": "loaded", "version": "2.0.0"}
    assert caller.is_alive()  # the reload was answered while the call still ran
    caller.join(60)
    assert answers == ["Tool slow returned: v1"]  # the running call finished on the version it began on
    wait_until(lambda: every_worker_reports(api, server, lambda entry: entry["name"] != "slow" or all(
        worker["version"] == "2.0.0" for worker in entry["workers"])), 20, 0.1, "every worker on slow 2.0.0")
    for _ in range(4):
        assert reply(api, "/tool slow {}") == "Tool slow returned: v2"


def test_a_broken_new_version_keeps_the_old_one_running(api, dirs):
    plugin_dir, _ = dirs
    module = plugin_dir / "weather" / "plugin.wasm"
    good = module.read_bytes()
    module.write_bytes(wasmtime.wat2wasm('(module (memory (export "memory") 1))'))
    try:
        answer = api.post("/plugins/weather/reload")
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["code"] == "plugin_refused"
        assert error["details"]["running_version"] == "1.2.0"
        assert "does not export alloc" in error["details"]["reason"]
        shown = plugins(api)["weather"]
        assert (shown["status"], shown["version"]) == ("loaded", "1.2.0")
        assert "1.2.0 keeps running" in shown["error"]
        assert "forecast" in reply(api, '/tool get_weather {"city": "Oslo"}')
    finally:
        module.write_bytes(good)
    assert api.post("/plugins/weather/reload").status_code == 200
    assert api.post("/plugins/nothing/reload").status_code == 404
    assert requests.post(api.url("/plugins/weather/reload"), headers=api.server.headers("write"),
                         timeout=10).status_code == 403


def test_skills_from_every_source_and_their_triggers(api):
    listed = {entry["name"]: entry for entry in fresh_get(api.url("/skills"), headers=api.headers).json()["skills"]}
    assert {name: entry["source"] for name, entry in listed.items()} == {
        "code_review": "builtin", "summarize": "builtin", "standup": "plugin:productivity", "haiku": "local"}
    assert listed["haiku"]["triggers"] == ["/haiku", "in verse"]

    review = read_skill(BUILTIN_DIR / "code_review", "builtin").contribution().text
    # The echo provider counts the words of every message it is sent, system prompt included: a
    # triggered turn is sent exactly the skill's words more than the same message untriggered.
    plain = turn(api, "/reviewer def add(a, b): return a - b")["usage"]["input"]
    triggered = turn(api, "/review def add(a, b): return a - b")["usage"]["input"]
    assert triggered - plain == count_words(review)
    phrase = turn(api, "please write this in verse")["usage"]["input"]
    unmatched = turn(api, "please write this in versed")["usage"]["input"]
    assert phrase - unmatched == count_words("Skill haiku (a test skill):\nAnswer in a haiku.")


def test_the_disabled_state_survives_a_restart(api, server):
    assert api.post("/plugins/grow/disable").status_code == 200
    api.close()
    server.stop()
    server.start()
    restarted = Api(server)
    try:
        listed = wait_until(lambda: every_worker_reports(restarted, server), 60, 0.2, "plugins after the restart")
        assert listed["grow"]["status"] == "disabled"
        assert all(worker["status"] == "disabled" for worker in listed["grow"]["workers"])
        assert reply(restarted, "/tool grow {}") == "echo: unknown tool grow"
        assert restarted.post("/plugins/grow/enable").status_code == 200
    finally:
        restarted.close()

