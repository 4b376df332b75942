from contextlib import ExitStack

import pytest

from tests.support.databases import BACKENDS, database_url
from tests.support.server import GunicornServer, serve


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    """Every test that touches a database runs on SQLite, and on PostgreSQL when configured."""
    return request.param


@pytest.fixture
def db_url(backend, tmp_path):
    with database_url(backend, tmp_path) as url:
        yield url


@pytest.fixture
def app_factory(tmp_path, db_url, monkeypatch):
    """Build an in-process app on this test's database with extra config tables."""
    from app import create_app
    from app.core.settings import load_settings
    from tests.support.config import merge, write_config

    monkeypatch.setenv("LOCKGATE_DATA_DIR", str(tmp_path / "data"))

    def build(config: dict | None = None):
        path = write_config(tmp_path / "lockgate.toml", merge({"database": {"url": db_url}}, config))
        return create_app(load_settings(path))

    yield build
    # What the apps of this test started in this process (tail loops, the log store of a CLI
    # command) ends with the test, before its database is dropped and another one opened.
    from app.core import background
    from app.core import logging as core_logging

    stuck = background.reset()
    core_logging.uninstall()
    assert not stuck, f"background tasks that did not stop: {stuck}"


@pytest.fixture
def app(app_factory):
    return app_factory()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def tokens(app):
    from app.core.auth import create_token
    from app.core.db import connection

    made = {}
    with connection():
        for scope in ("read", "write", "admin"):
            made[scope] = create_token(f"test-{scope}", [scope])[1]
    return made


@pytest.fixture
def auth(tokens):
    def headers(scope="admin"):
        return {"Authorization": f"Bearer {tokens[scope]}"}

    return headers


@pytest.fixture
def server_factory(tmp_path_factory, backend):
    """Start gunicorn servers (2 workers) on fresh databases; all stopped after the test."""
    with ExitStack() as started:

        def start(config: dict | None = None, workers: int = 2) -> GunicornServer:
            return started.enter_context(serve(tmp_path_factory.mktemp("server"), backend, config, workers))

        yield start


@pytest.fixture(scope="module")
def server(tmp_path_factory, backend):
    """One default gunicorn server (2 workers) shared by a test module."""
    with serve(tmp_path_factory.mktemp("server"), backend) as instance:
        yield instance
