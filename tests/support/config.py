"""Writing test configuration files."""

from __future__ import annotations

from pathlib import Path

import tomlkit


def write_config(path: Path, tables: dict) -> Path:
    """``tables`` maps section names to dicts (nested for channels_config)."""
    document = tomlkit.document()
    document.add(tomlkit.comment("written by the test suite"))
    for section, values in tables.items():
        table = tomlkit.table()
        for key, value in values.items():
            table[key] = value
        document[section] = table
    path.write_text(tomlkit.dumps(document), encoding="utf-8")
    return path


def merge(base: dict, extra: dict | None) -> dict:
    merged = {section: dict(values) for section, values in base.items()}
    for section, values in (extra or {}).items():
        merged.setdefault(section, {}).update(values)
    return merged
