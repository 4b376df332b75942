import threading

import pytest

from app.agent.builtin_tools import default_registry
from app.agent.tools import Tool
from app.core import jobs
from app.runtime import executor

RELAXED = {"rate_limits": {"runtime_read": "10000/s", "runtime_write": "10000/s", "runtime_run": "10000/s"},
           "runtime": {"poll_interval_secs": 0.02}}


@pytest.fixture
def runtime_app(app_factory):
    def build(config: dict | None = None):
        merged = {section: dict(values) for section, values in RELAXED.items()}
        for section, values in (config or {}).items():
            merged.setdefault(section, {}).update(values)
        return app_factory(merged)

    return build


@pytest.fixture
def app(runtime_app):
    return runtime_app()


@pytest.fixture
def pool(app):
    """This test's job pool running executions, as a served worker's would."""
    running = jobs.Pool(app.extensions["lockgate"], [executor.KIND])
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            running.step()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield running
    stop.set()
    thread.join(10)
    running.wait(10)


@pytest.fixture
def extra_tools():
    """Tools registered for one test in the process-wide registry, withdrawn after it."""
    registry = default_registry()
    yield lambda *tools: [registry.register(tool, replace=True) for tool in tools]
    registry.unregister_source("test")


def tool(name: str, handler, tags=()) -> Tool:
    return Tool(name=name, description=f"test tool {name}", parameters={"type": "object"}, handler=handler,
                source="test", tags=frozenset(tags))
