"""Admission of a plugin directory: the manifest's shape and bounds, before any of its code runs."""

import os
import re

import pytest

from app.plugins.manifest import MAX_MANIFEST_BYTES, ManifestProblem, names, read
from tests.plugins import wat

MODULE_LIMIT = 1024 * 1024


def test_the_example_plugin_is_admitted(plugin_root, settings_for):
    wat.copy_example(plugin_root)
    manifest = read(plugin_root, "weather", MODULE_LIMIT)
    assert (manifest.name, manifest.version) == ("weather", "1.2.0")
    assert [capability.label for capability in manifest.capabilities] == ["tool:get_weather"]
    assert manifest.wasm[:4] == b"\0asm"
    # The plugin's own resources lower the operator's limits, never raise them.
    limits = manifest.limits(settings_for(max_fuel=5_000_000, max_memory_mb=64, max_execution_time_ms=5000))
    assert (limits.fuel, limits.memory_bytes, limits.time_ms) == (5_000_000, 4 * 1024 * 1024, 1000)


def test_the_committed_example_module_is_built_from_its_text():
    import wasmtime

    assert (wat.EXAMPLE / "plugin.wasm").read_bytes() == wasmtime.wat2wasm((wat.EXAMPLE / "plugin.wat").read_text())


def rewrite(directory, old: str, new: str) -> None:
    path = directory / "plugin.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize(("old", "new", "reason"), [
    ('name = "weather"', 'name = "other"', "must be the directory's name"),
    ('version = "1.2.0"', 'version = ""', "[plugin] version must be a non-empty string"),
    ('wasm = "plugin.wasm"', 'wasm = "../elsewhere.wasm"', "[plugin] wasm must be a file name"),
    ('type = "tool"', 'type = "daemon"', "type must be one of tool, skill"),
    ('name = "get_weather"', 'name = "get weather"', "name must be letters, digits"),
    ("wasi = false", "network = true", "network cannot be granted"),
    ("wasi = false", "sockets = true", "unknown keys: sockets"),
    ("wasi = false", 'wasi = true\nfilesystem = ["../.."]', "must be a relative path inside"),
    ("wasi = false", 'filesystem = ["data"]', "need wasi = true"),
    ("max_fuel = 10000000", "max_fuel = -1", "max_fuel must be a positive integer"),
    ("max_fuel = 10000000", "max_cpus = 2", "unknown keys: max_cpus"),
    ("[plugin]", "[plugin", "is not valid TOML"),
])
def test_a_broken_manifest_is_refused_with_its_reason(plugin_root, old, new, reason):
    rewrite(wat.copy_example(plugin_root), old, new)
    with pytest.raises(ManifestProblem, match=re.escape(reason)):
        read(plugin_root, "weather", MODULE_LIMIT)


def test_a_manifest_without_capabilities_is_refused(plugin_root):
    directory = wat.copy_example(plugin_root)
    text = (directory / "plugin.toml").read_text()
    head, _, rest = text.partition("[[capabilities]]")
    (directory / "plugin.toml").write_text(head + "[permissions]" + rest.partition("[permissions]")[2])
    with pytest.raises(ManifestProblem, match="declares no"):
        read(plugin_root, "weather", MODULE_LIMIT)


def test_sizes_are_bounded(plugin_root):
    directory = wat.copy_example(plugin_root)
    with pytest.raises(ManifestProblem, match="plugin.wasm is 639 bytes; at most 100"):
        read(plugin_root, "weather", 100)
    (directory / "plugin.toml").write_text("# " + "x" * MAX_MANIFEST_BYTES)
    with pytest.raises(ManifestProblem, match="plugin.toml is .* bytes; at most 65536"):
        read(plugin_root, "weather", MODULE_LIMIT)


def test_symbolic_links_are_refused(plugin_root, tmp_path):
    directory = wat.copy_example(plugin_root)
    outside = tmp_path / "outside.wasm"
    (directory / "plugin.wasm").rename(outside)
    os.symlink(outside, directory / "plugin.wasm")
    with pytest.raises(ManifestProblem, match="plugin.wasm is a symbolic link"):
        read(plugin_root, "weather", MODULE_LIMIT)

    os.symlink(directory, plugin_root / "alias")
    with pytest.raises(ManifestProblem, match="the plugin directory is a symbolic link"):
        read(plugin_root, "alias", MODULE_LIMIT)
    assert names(plugin_root) == ["weather"]  # the link is not listed as a plugin


def test_missing_files_and_bad_names(plugin_root):
    directory = wat.copy_example(plugin_root)
    (directory / "plugin.wasm").unlink()
    with pytest.raises(ManifestProblem, match="plugin.wasm is missing"):
        read(plugin_root, "weather", MODULE_LIMIT)
    with pytest.raises(ManifestProblem, match="there is no plugin directory"):
        read(plugin_root, "absent", MODULE_LIMIT)
    with pytest.raises(ManifestProblem, match="is not a plugin name"):
        read(plugin_root, "../weather", MODULE_LIMIT)
