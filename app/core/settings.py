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
import functools
import importlib
import math
import os
import re
import tempfile
import threading
import tomllib
from pathlib import Path
from typing import Any

from app.areas import AREAS
from app.core import redaction
from app.core.fields import OPEN, Field
from app.core.timeparse import parse_duration

REDACTED = redaction.MARKER
LIMIT_PATTERN = re.compile(r"^\s*(\d{1,12})\s*/\s*(\d{0,12})\s*(s|sec|second|m|min|minute|h|hour)s?\s*$")
# A window longer than a day is a typo; counters are not kept that long.
MAX_LIMIT_PERIOD = 86_400


class ConfigError(Exception):
    """A configuration problem worth a one-line message, never a traceback."""


# The platform's own sections; each area adds its own (``app.<area>.settings``).
CORE_SECTIONS: dict[str, dict[str, Field]] = {
    "gateway": {
        "host": Field("str", "127.0.0.1", hot=False,
            help="Address gunicorn binds to; 0.0.0.0 listens on every interface."),
        "port": Field("int", 3120, hot=False, minimum=1, maximum=65_535, help="TCP port gunicorn binds to."),
        "workers": Field("int", 0, hot=False, minimum=0, maximum=1024,
            help="gunicorn worker processes; 0 means WEB_CONCURRENCY, else max(2, CPU count)."),
        "trusted_proxies": Field("list", [], help="Addresses or CIDR ranges whose X-Forwarded-For header is believed."),
        "max_body_bytes": Field("int", 1_048_576, minimum=1024, maximum=1 << 30,
            help="Largest request body accepted; larger ones get 413 payload_too_large."),
        "max_streams_per_token": Field("int", 100, minimum=1, maximum=1_000_000,
            help="Server-Sent Event streams one token may hold open at once; beyond it 429."),
        "max_stream_backlog": Field("int", 10_000, minimum=10, maximum=10_000_000,
            help="Records queued for a stream whose client stopped reading before the stream is closed."),
    },
    "database": {"url": Field("str", "", hot=False, secret=True,
        help="sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB; empty: lockgate.db in the data directory.")},
    "redis": {"url": Field("str", "", hot=False, secret=True,
        help="Redis for the rate-limit counters; empty: PostgreSQL, or ratelimit.counters in the data directory."),
        "timeout_secs": Field("float", 0.25, hot=False, minimum=0.01, maximum=30,
            help="Longest wait for Redis to connect or answer; past it the request goes on without counting.")},
    "auth": {"default_token_expiry_days": Field("int", 0, minimum=0, maximum=36_500,
        help="Lifetime of tokens created without --expires; 0 means they never expire.")},
    "rate_limits": {
        "enabled": Field("bool", True, help="Turns per-token (per-address without a token) rate limiting on or off."),
        "default": Field("limit", "30/s", help="Limit of every route without a group of its own."),
        "probes": Field("limit", "1000/s",
            help="Limit of GET /api/v1/status/health, kept high for load balancers and probes."),
        "on_storage_error": Field("str", "allow", choices=("allow", "deny"),
            help="When the counter storage fails: allow requests unlimited, or deny them with 503."),
    },
}


def assemble_schema(area_names=AREAS) -> dict[str, dict[str, Field] | object]:
    """The whole schema: the core sections plus every area's ``SECTIONS``, merged by section."""
    schema = {section: fields if fields is OPEN else dict(fields) for section, fields in CORE_SECTIONS.items()}
    for name in area_names:
        try:
            module = importlib.import_module(f"app.{name}.settings")
        except ModuleNotFoundError as exc:
            if exc.name != f"app.{name}.settings":
                raise
            continue
        for section, fields in module.SECTIONS.items():
            target = schema.setdefault(section, {} if fields is not OPEN else OPEN)
            if fields is OPEN or target is OPEN:
                if fields is not target:
                    raise RuntimeError(f"[{section}] is declared both free-form and with keys")
                continue
            clash = target.keys() & fields.keys()
            if clash:
                raise RuntimeError(f"[{section}] keys declared twice: {', '.join(sorted(clash))}")
            target.update(fields)
    return schema


SCHEMA = assemble_schema()
OPEN_SECTIONS = {section for section, fields in SCHEMA.items() if fields is OPEN}


def defaults() -> dict:
    return {
        section: {} if fields is OPEN else {key: copy.deepcopy(field.default) for key, field in fields.items()}
        for section, fields in SCHEMA.items()
    }


@functools.lru_cache(maxsize=256)  # every request parses its group's limit
def parse_limit(text: str) -> tuple[int, int]:
    """'10/s' -> (10, 1); '100/min' -> (100, 60); '20/5s' -> (20, 5)."""
    match = LIMIT_PATTERN.match(text)
    if not match:
        raise ValueError(f"not a rate limit like '10/s' or '100/min': {text!r}")
    count, multiple, unit = int(match[1]), int(match[2] or 1), match[3][0]
    period = multiple * {"s": 1, "m": 60, "h": 3600}[unit]
    if count < 1 or period < 1:
        raise ValueError(f"a rate limit needs at least one request per period of at least one second: {text!r}")
    if period > MAX_LIMIT_PERIOD:
        raise ValueError(f"a rate limit's period is at most {MAX_LIMIT_PERIOD // 3600}h: {text!r}")
    return count, period


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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or _infinite(value):
            raise ValueError("expected a finite number")
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
    elif kind == "tables":
        _check_tables(value)
    if field.choices and value not in field.choices:
        raise ValueError(f"expected one of {', '.join(field.choices)}")
    if field.minimum is not None and value < field.minimum:
        raise ValueError(f"must be at least {_number(field.minimum)}")
    if field.maximum is not None and value > field.maximum:
        raise ValueError(f"must be at most {_number(field.maximum)}")
    return value


def _check_tables(value: Any) -> None:
    """A ``tables`` value: one table per name, holding values, lists of values or tables of those."""
    if not isinstance(value, dict) or not all(isinstance(table, dict) for table in value.values()):
        raise ValueError("expected one table per name")
    bad = _first_infinite(value, "")
    if bad:
        raise ValueError(f"{bad.lstrip('.')}: expected a finite number")


def _infinite(value) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _first_infinite(value: Any, dotted: str) -> str | None:
    """The dotted key of a nan or inf in a TOML table (JSON cannot carry them back to clients)."""
    if isinstance(value, dict):
        return next(filter(None, (_first_infinite(v, f"{dotted}.{k}") for k, v in value.items())), None)
    if isinstance(value, list):
        return next(filter(None, (_first_infinite(v, dotted) for v in value)), None)
    return dotted if _infinite(value) else None


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def validate(data: dict, locate=lambda dotted: None) -> dict:
    """Merge a parsed TOML document over the defaults; reject unknown keys and bad values."""
    merged = defaults()
    for section, table in data.items():
        if section not in SCHEMA:
            raise ConfigError(_where(f"unknown section [{section}]", locate(section)))
        if not isinstance(table, dict):
            raise ConfigError(_where(f"[{section}] must be a table", locate(section)))
        if section in OPEN_SECTIONS:
            bad = _first_infinite(table, section)
            if bad:
                raise ConfigError(_where(f"{bad}: expected a finite number", locate(bad)))
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


def schema_verdict(path: tuple) -> bool | None:
    """Whether the schema marks the key at ``path`` secret; None where it does not describe the key.

    Section names are never secrets (``[auth]`` holds none); below them, keys the schema does not
    know (free-form tables) are judged by their names (``app.core.redaction``).
    """
    if len(path) < 2:
        return False
    field = field_for(f"{path[0]}.{path[1]}")
    if len(path) == 2:
        return None if field is None else field.secret
    if field is None or field.kind != "tables":
        return None
    if len(path) == 3:
        return False  # the name of a table ([mcp.servers.keycloak]) is not a secret either
    return True if path[3] in field.secret_keys else None


def redact(value: Any) -> Any:
    """A copy of a configuration tree with every secret, at any depth, hidden."""
    return redaction.redact(value, schema_verdict)


def is_secret_key(dotted: str) -> bool:
    """Whether ``redact`` hides the value of a dotted key (by its field, its name or a table above it)."""
    return redaction.is_secret_path(tuple(dotted.split(".")), schema_verdict)


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
        self._lookups: tuple[dict | None, dict] = (None, {})
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
        """The value of a key; a key the schema does not know is a programming error.

        Only inside free-form sections (``channels_config.<name>.<key>``) and
        ``tables`` keys (``mcp.servers.<name>.<key>``) may a key be absent, and
        then ``default`` answers.
        """
        data, cache = self._lookups
        if data is not self.data:
            # Every request reads a few keys: remember each for the data it came from.
            cache = {}
            self._lookups = (self.data, cache)
        if dotted in cache:
            return cache[dotted]
        value = self._lookup(dotted, default)
        if value is not default:
            cache[dotted] = value
        return value

    def _lookup(self, dotted: str, default):
        section = dotted.partition(".")[0]
        free_form = section in OPEN_SECTIONS or tables_key(dotted) is not None
        if not free_form and field_for(dotted) is None and section != dotted:
            raise KeyError(f"unknown configuration key {dotted!r}")
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                if free_form:
                    return default
                raise KeyError(f"unknown configuration key {dotted!r}")
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

    A secret sent back as GET showed it is dropped, and a value sent back with
    masked parts (a URL's password) gets them from the stored value: clients
    echo what GET returned and must not overwrite the real value with the marker.
    """
    to_write, errors = {}, {}
    tables = {section: copy.deepcopy(current.data.get(section, {})) for section in OPEN_SECTIONS}
    for dotted, value in changes.items():
        parts = dotted.split(".")
        section = parts[0]
        inside = tables_key(dotted)
        if section in OPEN_SECTIONS or inside is not None:
            if inside is not None:
                # Within a tables key, its dotted name plays the section's part: mcp.servers.<name>.<key>.
                table = tables.setdefault(inside, copy.deepcopy(_stored(current, inside) or {}))
                parts = [inside, *parts[2:]]
            else:
                table = tables[section]
            problem = (_file_only_problem(inside, parts) or _open_key_problem(parts, table)
                       or _open_value_problem(value))
            if problem:
                errors[dotted] = [problem]
                continue
        else:
            field = field_for(dotted) if len(parts) == 2 else None
            if field is None:
                errors[dotted] = ["unknown configuration key"]
                continue
            if field.file_only_keys:
                errors[dotted] = [f"set its keys one by one ({dotted}.<name>.<key>)"]
                continue
            try:
                value = coerce(field, value)
            except ValueError as exc:
                errors[dotted] = [str(exc)]
                continue
        try:
            value = redaction.unmask(value, _stored(current, dotted), is_secret_key(dotted))
        except redaction.MaskedValueError as exc:
            errors[dotted] = [str(exc)]
            continue
        if value is redaction.KEEP:
            continue
        to_write[dotted] = value
    return to_write, errors


def _file_only_problem(inside: str | None, parts: list[str]) -> str | None:
    """Why a key of a ``tables`` entry may not be set over the API (it says what the gateway runs)."""
    if inside is None or len(parts) < 3 or parts[2] not in field_for(inside).file_only_keys:
        return None
    return f"{inside}.{parts[1]}.{parts[2]} can be set only in the configuration file"


def _open_key_problem(parts: list[str], table: dict) -> str | None:
    """Why ``section.name.key`` cannot be set in a free-form table (as it stands, with this patch's earlier keys)."""
    if len(parts) < 3 or not all(parts):
        return f"expected {parts[0]}.<name>.<key>"
    node = table
    for depth, part in enumerate(parts[1:-1], start=2):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return f"{'.'.join(parts[:depth])} is a value, not a table: it cannot hold keys"
        node = child
    if isinstance(node.get(parts[-1]), dict):
        return f"{'.'.join(parts)} is a table: set its keys one by one"
    node[parts[-1]] = None  # taken: a later key of this patch cannot go under it
    return None


def _open_value_problem(value: Any) -> str | None:
    scalar = (str, int, float, bool)
    if isinstance(value, scalar) or (isinstance(value, list) and all(isinstance(v, scalar) for v in value)):
        return None
    return "expected a string, number, boolean, or a list of those"


def _stored(current: Settings, dotted: str) -> Any:
    try:
        return current.get(dotted)
    except KeyError:
        return None


def needs_restart(dotted: str) -> bool:
    field = field_for(dotted)
    return field is not None and not field.hot


def tables_key(dotted: str) -> str | None:
    """``section.key`` when ``dotted`` lies inside a ``tables`` key (``mcp.servers.fs.url``), else None."""
    parts = dotted.split(".")
    if len(parts) < 3:
        return None
    head = f"{parts[0]}.{parts[1]}"
    field = field_for(head)
    return head if field is not None and field.kind == "tables" else None


def field_for(dotted: str) -> Field | None:
    """The schema's field for ``section.key``; None for free-form sections and unknown keys."""
    section, _, key = dotted.partition(".")
    fields = SCHEMA.get(section)
    return None if fields is None or fields is OPEN else fields.get(key)


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
