"""Skills: instructions an agent takes on for one turn when the user's message asks for them.

A skill is a directory holding a ``SKILL.md`` (YAML front matter with
``name``, ``description`` and ``triggers``; the body is the instructions) or
PRX's ``SKILL.toml`` (``[skill] name, description, triggers, prompts``).
Skills come from three places: those shipped with Lockgate (``builtin``),
those of loaded, enabled plugins (``plugin:<name>``, only the skills their
manifest declares) and the operator's ``[skills] dir`` (``local``). A name
given twice is the operator's first, then a plugin's, then the builtin one,
so a local skill can replace a shipped one.

A turn's message activates a skill when it starts with one of its slash
triggers (``/review``) or contains one of its phrase triggers ("review this",
any case, whole words); the instructions then join that turn's system prompt
as the contribution ``skill:<name>``. The catalogue is read again only when a
skill file changes (a stat of each per turn).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

from app.agent.runner import Contribution
from app.plugins import host as plugin_hosts
from app.plugins.manifest import ManifestProblem, read_bounded

log = logging.getLogger("skills")

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
MAX_SKILL_BYTES = 64 * 1024
MAX_SKILLS = 256
MAX_TRIGGERS = 16
MAX_TRIGGER_CHARS = 100
MAX_DESCRIPTION_CHARS = 1000
# A message naming many skills gets this many at most, so the system prompt stays bounded.
MAX_ACTIVE = 4
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FILES = ("SKILL.md", "SKILL.toml")
BUILTIN, LOCAL = "builtin", "local"


class SkillProblem(Exception):
    pass


@dataclass(frozen=True)
class Skill:
    name: str
    source: str
    description: str
    triggers: tuple[str, ...]
    instructions: str

    def matches(self, message: str) -> bool:
        return any(_trigger_matches(trigger, message) for trigger in self.triggers)

    def contribution(self) -> Contribution:
        return Contribution(f"skill:{self.name}", f"Skill {self.name} ({self.description}):\n{self.instructions}")


def _trigger_matches(trigger: str, message: str) -> bool:
    if trigger.startswith("/"):
        head = message.lstrip()
        return head[: len(trigger)].lower() == trigger.lower() and head[len(trigger): len(trigger) + 1].strip() == ""
    return re.search(rf"(?<!\w){re.escape(trigger)}(?!\w)", message, re.IGNORECASE) is not None


# ---- reading one skill ------------------------------------------------------------------


def read_skill(directory: Path, source: str) -> Skill:
    """The skill of one directory; raises ``SkillProblem`` saying what is wrong with it."""
    for file_name in FILES:
        path = directory / file_name
        if os.path.lexists(path):
            try:
                text = read_bounded(path, MAX_SKILL_BYTES).decode("utf-8")
            except ManifestProblem as exc:
                raise SkillProblem(str(exc)) from None
            except UnicodeDecodeError:
                raise SkillProblem(f"{file_name} is not UTF-8 text") from None
            fields = _markdown(text) if file_name == "SKILL.md" else _toml(text)
            return _skill(fields, source)
    raise SkillProblem(f"no {' or '.join(FILES)} in {directory.name}")


def _markdown(text: str) -> dict:
    match = re.match(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)(.*)\Z", text, re.DOTALL)
    if match is None:
        raise SkillProblem("SKILL.md must begin with YAML front matter between --- lines")
    try:
        front = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        raise SkillProblem(f"SKILL.md front matter is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(front, dict):
        raise SkillProblem("SKILL.md front matter must be a mapping")
    return {**front, "instructions": match.group(2)}


def _toml(text: str) -> dict:
    try:
        table = tomllib.loads(text).get("skill")
    except tomllib.TOMLDecodeError as exc:
        raise SkillProblem(f"SKILL.toml is not valid TOML: {exc}") from None
    if not isinstance(table, dict):
        raise SkillProblem("SKILL.toml needs a [skill] table")
    prompts = table.get("prompts", [])
    if isinstance(prompts, str):
        prompts = [prompts]
    if not isinstance(prompts, list) or not all(isinstance(prompt, str) for prompt in prompts):
        raise SkillProblem("[skill] prompts must be a list of strings")
    return {**table, "instructions": "\n\n".join(prompts)}


def _skill(fields: dict, source: str) -> Skill:
    name = fields.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise SkillProblem(f"name must be letters, digits, _ and -, at most 64, not {name!r}")
    description = fields.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        raise SkillProblem(f"description must be a string of at most {MAX_DESCRIPTION_CHARS} characters")
    triggers = fields.get("triggers", [])
    if isinstance(triggers, str):
        triggers = [triggers]
    if (not isinstance(triggers, list) or len(triggers) > MAX_TRIGGERS
            or not all(isinstance(item, str) and 0 < len(item.strip()) <= MAX_TRIGGER_CHARS for item in triggers)):
        raise SkillProblem(f"triggers must be a list of at most {MAX_TRIGGERS} non-empty strings of at most "
                           f"{MAX_TRIGGER_CHARS} characters")
    instructions = fields["instructions"].strip()
    if not instructions:
        raise SkillProblem("the skill has no instructions")
    return Skill(name=name, source=source, description=description.strip(),
                 triggers=tuple(item.strip() for item in triggers), instructions=instructions)


# ---- the catalogue --------------------------------------------------------------------------


def local_dir(settings) -> Path:
    configured = settings.get("skills.dir")
    return Path(configured) if configured else Path(settings.data_dir) / "skills"


def _places(settings) -> list[tuple[str, Path, tuple[str, ...] | None]]:
    """(source, directory of skill directories, the names allowed or None) in order of precedence."""
    places: list[tuple[str, Path, tuple[str, ...] | None]] = [(LOCAL, local_dir(settings), None)]
    host = plugin_hosts.current()
    for plugin, directory, declared in (host.skill_dirs() if host is not None else []):
        places.append((f"plugin:{plugin}", Path(directory), declared))
    places.append((BUILTIN, BUILTIN_DIR, None))
    return places


def _candidates(settings) -> list[tuple[str, Path, int, int]]:
    """Every skill file in every place: (source, directory, mtime, size), the catalogue's signature."""
    found = []
    for source, root, declared in _places(settings):
        try:
            entries = sorted(os.scandir(root), key=lambda entry: entry.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if declared is not None and entry.name not in declared:
                continue
            if not entry.is_dir(follow_symlinks=False):
                continue
            for file_name in FILES:
                try:
                    info = os.lstat(Path(entry.path) / file_name)
                except FileNotFoundError:
                    continue
                found.append((source, Path(entry.path), info.st_mtime_ns, info.st_size))
                break
    return found


class Catalogue:
    """Every skill, read again when the set of skill files or one of them changes."""

    def __init__(self):
        self._signature = None
        self._skills: dict[str, Skill] = {}
        self._lock = threading.Lock()

    def skills(self, settings) -> dict[str, Skill]:
        signature = tuple(_candidates(settings))
        with self._lock:
            if signature != self._signature:
                self._skills = _read_all(signature)
                self._signature = signature
            return self._skills


def _read_all(candidates) -> dict[str, Skill]:
    skills: dict[str, Skill] = {}
    for source, directory, _mtime, _size in candidates:
        if len(skills) >= MAX_SKILLS:
            log.warning("more than %d skills: those after %s are not read", MAX_SKILLS, directory)
            break
        try:
            skill = read_skill(directory, source)
        except SkillProblem as exc:
            log.warning("skill in %s (%s) skipped: %s", directory, source, exc)
            continue
        if skill.name in skills:
            log.info("skill %s of %s is shadowed by the one of %s", skill.name, source, skills[skill.name].source)
            continue
        skills[skill.name] = skill
    return skills


_catalogue = Catalogue()


def list_skills(settings) -> list[dict]:
    return [{"name": skill.name, "source": skill.source, "description": skill.description,
             "triggers": list(skill.triggers)} for skill in sorted(_catalogue.skills(settings).values(),
                                                                    key=lambda skill: skill.name)]


def activated(settings, message: str) -> list[Skill]:
    """The skills the message's triggers activate, by name (at most ``MAX_ACTIVE``)."""
    found = [skill for skill in _catalogue.skills(settings).values() if skill.matches(message)]
    return sorted(found, key=lambda skill: skill.name)[:MAX_ACTIVE]


def contributions(settings, message: str) -> list[Contribution]:
    """The area's prompt contributor: the instructions of the skills this message activates."""
    try:
        skills = activated(settings, message)
    except OSError:
        # An unreadable skills directory must not cost the user their turn.
        log.warning("skills could not be read for this turn", exc_info=True)
        return []
    for skill in skills:
        log.info("skill %s (%s) activated", skill.name, skill.source)
    return [skill.contribution() for skill in skills]
