from pathlib import Path

import pytest

from app.core.settings import load_settings
from tests.support.config import write_config


@pytest.fixture
def plugin_root(tmp_path) -> Path:
    root = tmp_path / "plugins"
    root.mkdir()
    return root


@pytest.fixture
def settings_for(tmp_path, plugin_root, monkeypatch):
    """Real settings with ``[plugins]`` keys set (the database is never touched through them here)."""
    monkeypatch.setenv("LOCKGATE_DATA_DIR", str(tmp_path / "data"))

    def build(**plugins):
        path = write_config(tmp_path / "sandbox.toml", {"plugins": {"dir": str(plugin_root), **plugins}})
        return load_settings(path)

    return build
