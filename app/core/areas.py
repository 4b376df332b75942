"""The area declaration: everything the platform needs to know of an area, in one place.

Each name in ``app.areas.AREAS`` has a module ``app.<name>.area`` defining
``AREA = Area(...)``. The factory registers their blueprints and CLI groups,
the event bus their in-transaction listeners, the status route their counts,
webhooks their event topics, and every served worker starts their background
work, all by looping over ``areas()``. Nothing registers itself by being imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache

from app.areas import AREAS


@dataclass(frozen=True)
class Area:
    name: str
    blueprints: tuple = ()
    # Topic -> what it means; hooks may subscribe to these (see docs/events.md).
    events: Mapping[str, str] = field(default_factory=dict)
    # Run inside every publishing transaction: durable consumers write their rows there.
    on_publish: tuple[Callable[[str, dict], None], ...] = ()
    # ``fn(settings) -> dict`` merged into GET /api/v1/status.
    status: Callable[[object], dict] | None = None
    # Durable job kinds (``app.core.jobs.Kind``): every served worker's one pool runs them all.
    jobs: tuple = ()
    # ``fn(state)`` started once in every served worker (supervised units, periodic sweeps).
    background: tuple[Callable[[object], object], ...] = ()
    cli: tuple = ()  # click groups for ``flask --app wsgi ...``
    # ``app.core.auth.EnvToken``s: bearer tokens from the environment accepted on the area's blueprints.
    env_tokens: tuple = ()
    # ``fn(settings, message) -> [app.agent.runner.Contribution]``: system prompt parts a session turn adds
    # for its new user message (a skill its triggers activate); every channel's turns go through them.
    prompt_contributors: tuple[Callable[[object, str], list], ...] = ()


@cache
def areas() -> tuple[Area, ...]:
    return tuple(importlib.import_module(f"app.{name}.area").AREA for name in AREAS)


def prompt_contributions(settings, message: str) -> list:
    """What every area adds to the system prompt of a turn answering ``message``, in the order of the areas."""
    return [part for area in areas() for contributor in area.prompt_contributors
            for part in contributor(settings, message)]


def event_topics() -> dict[str, str]:
    topics: dict[str, str] = {}
    for area in areas():
        clash = topics.keys() & area.events.keys()
        if clash:
            raise RuntimeError(f"event topics declared twice: {', '.join(sorted(clash))}")
        topics.update(area.events)
    return topics


class Topics(Mapping):
    """The event catalogue, read from the declarations when first used (they import the areas)."""

    def _topics(self) -> dict[str, str]:
        return _cached_topics()

    def __getitem__(self, topic: str) -> str:
        return self._topics()[topic]

    def __iter__(self) -> Iterator[str]:
        return iter(self._topics())

    def __len__(self) -> int:
        return len(self._topics())


@cache
def _cached_topics() -> dict[str, str]:
    return event_topics()
