"""Skills: reading SKILL.md and SKILL.toml, their limits, triggers, sources, and what a triggered turn is sent."""

import os

import pytest

from app.agent.runner import Contribution
from app.core.db import connection
from app.plugins import host as hosts
from app.sessions import turns
from app.skills import service
from app.skills.service import BUILTIN_DIR, MAX_SKILL_BYTES, Catalogue, Skill, SkillProblem, read_skill
from tests.plugins import wat


@pytest.fixture
def skills_dir(tmp_path):
    path = tmp_path / "skills"
    path.mkdir()
    return path


@pytest.fixture
def app(app_factory, skills_dir, tmp_path):
    return app_factory({"skills": {"dir": str(skills_dir)}, "plugins": {"dir": str(tmp_path / "plugins")},
                        "memory": {"backend": "none"}})


@pytest.fixture
def settings(app):
    return app.extensions["lockgate"].settings


def skill(triggers, name="probe") -> Skill:
    return Skill(name=name, source="local", description="", triggers=tuple(triggers), instructions="Do it.")


@pytest.mark.parametrize(("message", "expected"), [
    ("/review def f(): pass", True),
    ("  /REVIEW please", True),
    ("/review", True),
    ("/reviewer def f(): pass", False),
    ("please /review it", False),  # a slash trigger starts the message
    ("Could you Review This function?", True),
    ("review this.", True),
    ("preview this page", False),  # whole words only
    ("review thistle", False),
])
def test_triggers(message, expected):
    assert skill(["/review", "review this"]).matches(message) is expected


def test_the_builtin_skills(settings):
    listed = {entry["name"]: entry for entry in service.list_skills(settings)}
    assert listed["code_review"] == {"name": "code_review", "source": "builtin",
                                     "description": "Review code changes and provide feedback",
                                     "triggers": ["/review", "review this"]}
    assert listed["summarize"]["triggers"] == ["/summarize", "tldr", "summarize this"]


def test_skill_toml_is_read_too(skills_dir):
    (skills_dir / "haiku").mkdir()
    (skills_dir / "haiku" / "SKILL.toml").write_text(
        '[skill]\nname = "haiku"\ndescription = "Answer in haiku"\ntriggers = ["/haiku"]\n'
        'prompts = ["Answer in a haiku.", "Three lines: 5, 7, 5 syllables."]\n')
    read = read_skill(skills_dir / "haiku", "local")
    assert read == Skill(name="haiku", source="local", description="Answer in haiku", triggers=("/haiku",),
                         instructions="Answer in a haiku.\n\nThree lines: 5, 7, 5 syllables.")


@pytest.mark.parametrize(("text", "reason"), [
    ("no front matter", "must begin with YAML front matter"),
    ("---\nname: [unclosed\n---\nbody", "front matter is not valid YAML"),
    ("---\n- a list\n---\nbody", "front matter must be a mapping"),
    ("---\nname: has space\n---\nbody", "name must be letters"),
    ("---\nname: ok\ntriggers: [1, 2]\n---\nbody", "triggers must be a list"),
    ("---\nname: ok\n---\n   \n", "has no instructions"),
])
def test_a_broken_skill_is_refused_with_its_reason(skills_dir, text, reason):
    (skills_dir / "bad").mkdir()
    (skills_dir / "bad" / "SKILL.md").write_text(text)
    with pytest.raises(SkillProblem, match=reason):
        read_skill(skills_dir / "bad", "local")


def test_size_and_links_are_bounded(skills_dir, tmp_path):
    big = wat.write_skill(skills_dir / "big", "big", ["/big"], "x" * MAX_SKILL_BYTES)
    with pytest.raises(SkillProblem, match="SKILL.md is .* bytes; at most 65536"):
        read_skill(big, "local")
    target = wat.write_skill(tmp_path / "elsewhere", "linked", ["/linked"], "Read secrets.")
    (skills_dir / "linked").mkdir()
    os.symlink(target / "SKILL.md", skills_dir / "linked" / "SKILL.md")
    with pytest.raises(SkillProblem, match="symbolic link"):
        read_skill(skills_dir / "linked", "local")


def test_at_most_256_skills_are_read(skills_dir, settings, monkeypatch):
    for n in range(260):
        wat.write_skill(skills_dir / f"s{n:03d}", f"s{n:03d}", [f"/s{n:03d}"], "Instructions.")
    skills = Catalogue().skills(settings)
    assert len(skills) == service.MAX_SKILLS
    assert "code_review" not in skills  # builtins come after the local ones, past the limit


def test_every_source_and_their_precedence(skills_dir, settings, app, tmp_path, monkeypatch):
    wat.write_skill(skills_dir / "mine", "mine", ["/mine"], "Local instructions.")
    wat.write_skill(skills_dir / "summarize", "summarize", ["/summarize"], "The operator's own summary rules.")
    root = tmp_path / "plugins"
    plugin = wat.write_simple(root, "productivity", "todo", skills=("standup",))
    wat.write_skill(plugin / "skills" / "standup", "standup", ["/standup"], "Give a stand-up report.")
    wat.write_skill(plugin / "skills" / "undeclared", "undeclared", ["/undeclared"], "Not in the manifest.")
    host = hosts.PluginHost(app.extensions["lockgate"], hosts.ToolRegistry(), "worker-1")
    monkeypatch.setattr(hosts, "_current", host)
    host.load_all()

    sources = {entry["name"]: entry["source"] for entry in service.list_skills(settings)}
    assert sources == {"code_review": "builtin", "mine": "local", "standup": "plugin:productivity",
                       "summarize": "local"}

    host.set_disabled("productivity", True)
    assert "standup" not in {entry["name"] for entry in service.list_skills(settings)}


def test_the_catalogue_follows_changes(skills_dir, settings):
    catalogue = Catalogue()
    assert "later" not in catalogue.skills(settings)
    path = wat.write_skill(skills_dir / "later", "later", ["/later"], "First version.")
    assert catalogue.skills(settings)["later"].instructions == "First version."
    (path / "SKILL.md").write_text("---\nname: later\ntriggers: [/later]\n---\nSecond version, longer.\n")
    assert catalogue.skills(settings)["later"].instructions == "Second version, longer."


def test_the_api_lists_skills(client, auth):
    answer = client.get("/api/v1/skills", headers=auth("read"))
    assert answer.status_code == 200
    assert {"code_review", "summarize"} <= {entry["name"] for entry in answer.json["skills"]}
    assert client.get("/api/v1/skills").status_code == 401


def session_id(client, auth) -> str:
    answer = client.post("/api/v1/sessions", json={"channel": "api", "user_id": "u1"}, headers=auth("write"))
    assert answer.status_code == 201
    return answer.json["id"]


def system_prompt(settings, session, content) -> str:
    with connection():
        turn = turns.begin_turn(settings, session, content)
        turn.run()
    return turn.prompt[0].content


def test_a_trigger_puts_the_skill_in_that_turns_system_prompt(client, auth, settings):
    session = session_id(client, auth)
    review = read_skill(BUILTIN_DIR / "code_review", "builtin")
    plain = system_prompt(settings, session, "hello there")
    assert review.instructions not in plain
    triggered = system_prompt(settings, session, "/review def add(a, b): return a - b")
    assert triggered == f"{plain}\n\n{review.contribution().text}"
    assert review.contribution() == Contribution("skill:code_review", review.contribution().text)
    # The next turn without a trigger is back to the plain prompt: a skill lasts one turn.
    assert system_prompt(settings, session, "thanks") == plain
    both = system_prompt(settings, session, "tldr, then review this please")
    assert "Skill code_review" in both and "Skill summarize" in both
