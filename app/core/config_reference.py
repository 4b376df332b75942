"""The configuration reference, ``docs/configuration.md``, printed from the settings schema.

Written from the same declarations the service validates against, so the page cannot list a key,
default or range the service does not have; ``tests/config/test_reference.py`` fails when the
committed page differs from what this prints. Regenerate with ``make config-reference``
(``python -m app.core.config_reference > docs/configuration.md``).
"""

from __future__ import annotations

import json
import sys

from app.core.fields import OPEN, Field
from app.core.settings import MAX_LIMIT_PERIOD, SCHEMA

REGENERATE = "make config-reference"

INTRO = f"""\
# Configuration reference

<!-- Generated from the settings schema by `{REGENERATE}`; edit the `help=` texts in the
     settings modules (app/core/settings.py, app/<area>/settings.py), not this file. -->

Lockgate reads one TOML file, named by `LOCKGATE_CONFIG` (default `./lockgate.toml`; the built-in
defaults below when the file does not exist). Its data directory (the SQLite database and the
rate-limit counters) is `LOCKGATE_DATA_DIR` (default `./var`). Every key is optional. A key or
section not listed here, or a value of the wrong type or out of range, stops start-up with a
message naming the key and its line; `PATCH /api/v1/config` refuses it with 400 and the reason.

- **Applies**: `at once` keys are picked up by every worker on its next request after the file
  changes (an edit or `PATCH /api/v1/config`); `restart` keys need the service restarted
  (`PATCH` answers `reload_required: true` for them).
- **Secret**: shown as `***REDACTED***` by `GET /api/v1/config`, `flask config show` and error
  bodies (a URL keeps everything but its password).

Types:

| Type | TOML value |
|---|---|
| `str` | a string |
| `int` | an integer |
| `float` | a number |
| `bool` | `true` or `false` |
| `list` | a list of strings |
| `limit` | `"COUNT/PERIOD"`: `"10/s"`, `"100/min"`, `"20/5s"`; period 1 s to {MAX_LIMIT_PERIOD // 3600} h |
| `durations` | a list of positive durations: `["5s", "2m", "1h", "7d"]` |
| `tables` | free-form tables, one per name (`[section.key.NAME]`), checked by the area reading them |

Rate limits count per token, or per client address for requests without one.
"""

OPEN_TEXT = """\
Free-form: one table per name (`[{section}.NAME]`), whose keys the schema does not check. Values are
strings, numbers, booleans or lists of those. A key whose name contains secret, token, key,
password, passwd, credential, auth, dsn or private is redacted, and so is everything in a table so
named.
"""

COLUMNS = ("Key", "Type", "Default", "Allowed", "Applies", "Secret", "Description")


def render(schema: dict = SCHEMA) -> str:
    """The whole page: the introduction, then one table per section in schema order."""
    parts = [INTRO]
    for section, fields in schema.items():
        parts.append(f"\n## [{section}]\n\n")
        parts.append(OPEN_TEXT.format(section=section) if fields is OPEN else _table(fields))
    return "".join(parts)


def _table(fields: dict[str, Field]) -> str:
    lines = [_row(COLUMNS), _row(["---"] * len(COLUMNS))]
    lines += [_row(_cells(key, field)) for key, field in fields.items()]
    return "\n".join(lines) + "\n"


def _cells(key: str, field: Field) -> list[str]:
    return [
        f"`{key}`",
        f"`{field.kind}`",
        f"`{_literal(field.default)}`",
        _allowed(field),
        "at once" if field.hot else "restart",
        _secret(field),
        getattr(field, "help", ""),
    ]


def _secret(field: Field) -> str:
    if getattr(field, "secret", False):
        return "yes"
    keys = getattr(field, "secret_keys", ())
    return ", ".join(f"`{key}`" for key in keys)


def _row(cells) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def _literal(value) -> str:
    # JSON spells strings, numbers, booleans and lists of them the way TOML does.
    return json.dumps(value, ensure_ascii=False)


def _allowed(field: Field) -> str:
    if field.choices:
        return ", ".join(f"`{_literal(choice)}`" for choice in field.choices)
    low, high = field.minimum, getattr(field, "maximum", None)
    if low is not None and high is not None:
        return f"{_number(low)} to {_number(high)}"
    if low is not None:
        return f"at least {_number(low)}"
    if high is not None:
        return f"at most {_number(high)}"
    return ""


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
