"""Runtime configuration: one TOML file, validated against a schema of known keys.

The file named by ``LOCKGATE_CONFIG`` (default ``./lockgate.toml``) is the
source of truth. Every worker re-reads it when its signature (inode, size,
mtime) changes, so a ``PATCH /api/v1/config`` written by one worker, or an
operator's edit, is seen by all workers without a restart.

This module imports neither Flask nor peewee: gunicorn's master loads it
before gevent patches the workers.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.timeparse import parse_duration

REDACTED = "***REDACTED***"
# A key names a secret when its last word is one: bot_token, api_key, client_secret
# (but not max_tokens or token_expiry_days).
SECRET_KEY_PATTERN = re.compile(
    r"(^|_)(token|secret|password|passwd|api_?key|private_?key|credentials?)$", re.IGNORECASE
)
LIMIT_PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|second|m|min|minute|h|hour)s?\s*$")


class ConfigError(Exception):
    """A configuration problem worth a one-line message, never a traceback."""


@dataclass(frozen=True)
class Field:
    kind: str  # str | int | float | bool | list | limit | durations
    default: Any
    hot: bool = True  # takes effect without a restart
    choices: tuple = ()
    minimum: float | None = None


# Sections whose keys are free-form (one table per channel).
OPEN_SECTIONS = {"channels_config"}

SCHEMA: dict[str, dict[str, Field]] = {
    "gateway": {
        "host": Field("str", "127.0.0.1", hot=False),
        "port": Field("int", 3120, hot=False, minimum=1),
        "workers": Field("int", 0, hot=False, minimum=0),
        "trusted_proxies": Field("list", []),
        "max_body_bytes": Field("int", 1_048_576, minimum=1024),
    },
    "database": {"url": Field("str", "", hot=False)},
    "redis": {"url": Field("str", "", hot=False)},
    "auth": {"default_token_expiry_days": Field("int", 0, minimum=0)},
    "rate_limits": {
        "enabled": Field("bool", True),
        "sessions_write": Field("limit", "10/s"),
        "sessions_read": Field("limit", "50/s"),
        "config_write": Field("limit", "5/s"),
        "default": Field("limit", "30/s"),
        "probes": Field("limit", "1000/s"),
    },
    "agent": {
        "max_turns": Field("int", 50, minimum=1),
        "max_tool_calls_per_turn": Field("int", 10, minimum=0),
        "session_timeout_secs": Field("int", 3600, minimum=1),
        "idle_after_secs": Field("int", 300, minimum=1),
        "system_prompt": Field("str", "You are a helpful assistant."),
        "sweep_interval_secs": Field("float", 5.0, minimum=0.1),
        # A turn holds its session's lock this long past its worker's last sign
        # of life, so a killed worker blocks the session for at most this.
        "lock_ttl_secs": Field("float", 10.0, minimum=1.0),
        # How long a message waits for the session's previous turn before a 409.
        "lock_wait_secs": Field("float", 120.0, minimum=0),
    },
    "memory": {
        "backend": Field("str", "sqlite", hot=False, choices=("sqlite", "none")),
        "top_k": Field("int", 5, minimum=0),
    },
    "provider": {
        "name": Field("str", "echo", choices=("echo", "openai", "anthropic")),
        "model": Field("str", "echo-1"),
        "base_url": Field("str", ""),
        "api_key": Field("str", ""),
        "timeout": Field("float", 60.0, minimum=0.1),
        "max_retries": Field("int", 3, minimum=0),
        "max_tokens": Field("int", 1024, minimum=1),
    },
    "channels_config": {},
    "hooks": {
        "allow_private_targets": Field("bool", False),
        "timeout_secs": Field("float", 10.0, minimum=0.1),
        "retry_schedule": Field("durations", ["5s", "30s", "2m", "10m", "1h", "6h"]),
        "disable_after_failures": Field("int", 20, minimum=1),
        "poll_interval_secs": Field("float", 0.25, minimum=0.01),
        "max_concurrency": Field("int", 32, minimum=1),  # deliveries in flight per worker
        "max_in_flight_per_hook": Field("int", 8, minimum=1),  # across all workers
        "retention_days": Field("float", 7.0, minimum=0),  # finished deliveries; 0 keeps them
    },
    "logs": {
        "level": Field("str", "info", choices=("trace", "debug", "info", "warn", "error")),
        "retention_days": Field("float", 7.0, minimum=0),
        "max_entries": Field("int", 100_000, minimum=100),
        "heartbeat_secs": Field("float", 15.0, minimum=0.1),
        "sweep_interval_secs": Field("float", 60.0, minimum=0.1),
    },
}


def defaults() -> dict:
    return {
        section: {key: copy.deepcopy(field.default) for key, field in fields.items()}
        for section, fields in SCHEMA.items()
    }


def parse_limit(text: str) -> tuple[int, int]:
    """'10/s' -> (10, 1); '100/min' -> (100, 60); '20/5s' -> (20, 5)."""
    match = LIMIT_PATTERN.match(text)
    if not match:
        raise ValueError(f"not a rate limit like '10/s' or '100/min': {text!r}")
    count, multiple, unit = int(match[1]), int(match[2] or 1), match[3][0]
    return count, multiple * {"s": 1, "m": 60, "h": 3600}[unit]


def _check_durations(values: list[str]) -> None:
    for text in values:
        if parse_duration(text).total_seconds() <= 0:
            raise ValueError(f"durations must be positive: {text!r}")


def coerce(field: Field, value: Any) -> Any:
    """Check one value against its field; raise ValueError with a short reason."""
    kind = field.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("expected true or false")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected an integer")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("expected a number")
        value = float(value)
    elif kind in ("str", "limit"):
        if not isinstance(value, str):
            raise ValueError("expected a string")
        if kind == "limit":
            parse_limit(value)
    elif kind in ("list", "durations"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("expected a list of strings")
        if kind == "durations":
            _check_durations(value)
    if field.choices and value not in field.choices:
        raise ValueError(f"expected one of {', '.join(field.choices)}")
    if field.minimum is not None and value < field.minimum:
        raise ValueError(f"must be at least {field.minimum:g}")
    return value


def validate(data: dict, locate=lambda dotted: None) -> dict:
    """Merge a parsed TOML document over the defaults; reject unknown keys and bad values."""
    merged = defaults()
    for section, table in data.items():
        if section not in SCHEMA:
            raise ConfigError(_where(f"unknown section [{section}]", locate(section)))
        if not isinstance(table, dict):
            raise ConfigError(_where(f"[{section}] must be a table", locate(section)))
        if section in OPEN_SECTIONS:
            merged[section] = copy.deepcopy(table)
            continue
        for key, value in table.items():
            dotted = f"{section}.{key}"
            field = SCHEMA[section].get(key)
            if field is None:
                raise ConfigError(_where(f"unknown key {dotted}", locate(dotted)))
            try:
                merged[section][key] = coerce(field, value)
            except ValueError as exc:
                raise ConfigError(_where(f"{dotted}: {exc}", locate(dotted))) from None
    return merged


def _where(message: str, line: int | None) -> str:
    return f"{message} (line {line})" if line else message


def line_locator(text: str):
    """Find the line of a dotted key in TOML text, for error messages."""

    def locate(dotted: str) -> int | None:
        section, _, key = dotted.partition(".")
        current = ""
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            header = re.match(r"^\[+\s*([^\]]+?)\s*\]+", stripped)
            if header:
                current = header[1]
                if not key and current.split(".")[0] == section:
                    return number
                continue
            if current == section and key and re.match(rf"^{re.escape(key)}\s*=", stripped):
                return number
        return None

    return locate


def redact(value: Any, key: str = "") -> Any:
    """A copy with every secret, at any depth, replaced by the redaction marker."""
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if key and SECRET_KEY_PATTERN.search(key) and value not in ("", None):
        return REDACTED
    return value


def is_secret_key(dotted: str) -> bool:
    return bool(SECRET_KEY_PATTERN.search(dotted.rsplit(".", 1)[-1]))


def config_path() -> Path:
    return Path(os.environ.get("LOCKGATE_CONFIG") or "lockgate.toml")


def data_dir() -> Path:
    return Path(os.environ.get("LOCKGATE_DATA_DIR") or "var")


class Settings:
    """The validated configuration, reloaded when the file changes."""

    def __init__(self, path: Path | None = None, overrides: dict | None = None):
        self.path = Path(path) if path else config_path()
        self.data_dir = data_dir()
        self._overrides = overrides or {}
        self._signature = None
        self._lock = threading.Lock()
        self.data = self._load()

    def _file_signature(self):
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _load(self) -> dict:
        self._signature = self._file_signature()
        document = {}
        if self._signature is not None:
            text = self.path.read_text(encoding="utf-8")
            try:
                document = tomllib.loads(text)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{self.path}: {exc}") from None
            try:
                data = validate(document, line_locator(text))
            except ConfigError as exc:
                raise ConfigError(f"{self.path}: {exc}") from None
        else:
            data = validate({})
        for dotted, value in self._overrides.items():
            section, key = dotted.split(".", 1)
            data[section][key] = value
        return data

    def refresh(self) -> bool:
        """Reload if the file changed; keep the last good config if the new one is bad."""
        if self._file_signature() == self._signature:
            return False
        with self._lock:
            if self._file_signature() == self._signature:
                return False
            try:
                self.data = self._load()
            except ConfigError:
                self._signature = self._file_signature()
                return False
            return True

    def get(self, dotted: str, default=None):
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def __getitem__(self, section: str) -> dict:
        return self.data[section]

    @property
    def database_url(self) -> str:
        return self.get("database.url") or f"sqlite:///{self.data_dir / 'lockgate.db'}"

    def redacted(self) -> dict:
        return redact(self.data)


def load_settings(path: Path | None = None, overrides: dict | None = None) -> Settings:
    return Settings(path, overrides)


# ---- editing the file ------------------------------------------------------


def check_patch(changes: dict, current: Settings) -> tuple[dict, dict]:
    """Validate dotted-key changes. Returns (to_write, errors_by_key).

    A secret sent back as the redaction marker is dropped: clients echo what
    GET returned and must not overwrite the real value with the marker.
    """
    to_write, errors = {}, {}
    for dotted, value in changes.items():
        parts = dotted.split(".")
        section = parts[0]
        if section in OPEN_SECTIONS:
            if len(parts) < 3 or not all(parts):
                errors[dotted] = [f"expected {section}.<name>.<key>"]
                continue
            if not isinstance(value, (str, int, float, bool, list)):
                errors[dotted] = ["expected a string, number, boolean or list"]
                continue
        else:
            field = SCHEMA.get(section, {}).get(".".join(parts[1:])) if len(parts) == 2 else None
            if field is None:
                errors[dotted] = ["unknown configuration key"]
                continue
            try:
                value = coerce(field, value)
            except ValueError as exc:
                errors[dotted] = [str(exc)]
                continue
        if value == REDACTED and is_secret_key(dotted):
            continue
        to_write[dotted] = value
    return to_write, errors


def needs_restart(dotted: str) -> bool:
    section, _, key = dotted.partition(".")
    field = SCHEMA.get(section, {}).get(key)
    return field is not None and not field.hot


def write_changes(path: Path, changes: dict) -> None:
    """Apply dotted-key changes to the TOML file, keeping its comments and layout.

    The new file replaces the old one atomically; a lock file serialises
    writers in different worker processes. Nothing here yields to gevent, so
    two greenlets of one worker cannot interleave inside the lock.
    """
    import fcntl

    import tomlkit

    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            text = path.read_text(encoding="utf-8") if path.exists() else ""
            document = tomlkit.parse(text)
            for dotted, value in changes.items():
                *tables, key = dotted.split(".")
                node = document
                for name in tables:
                    if name not in node:
                        node[name] = tomlkit.table()
                    node = node[name]
                node[key] = value
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(tomlkit.dumps(document))
            os.replace(tmp, path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
