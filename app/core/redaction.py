"""Secrets are hidden by what they are, wherever the service shows text: config, CLI, logs, error bodies.

Three rules, applied by every reader of this module:

- a key the schema marks ``secret`` is hidden (a URL shows everything but its password);
- a key the schema does not describe (free-form tables such as ``channels_config.*``) is hidden when
  its name looks like a secret's, and so is everything beneath it: a table or list so named;
- in any text, the password of a URL and query values named like credentials are masked, so a
  ``webhook_url`` or a ``dsn`` keeps its secret even under a harmless name.

Going back the other way, a value sent back with masked parts (``PATCH`` of what ``GET`` showed)
gets those parts from the stored value: clients never overwrite a secret with the marker.

Import-light (only ``re``): the settings module, which gunicorn's master loads, relies on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MARKER = "***REDACTED***"

# Deliberately broad: in a free-form table, hiding a harmless value costs little, showing a key leaks it.
SECRET_NAME = re.compile(r"secret|token|key|passw(or)?d|credential|auth|dsn|private", re.IGNORECASE)
# Query parameters also carry signatures (``sig``, ``X-Amz-Signature``) and short password names.
SECRET_PARAMETER = re.compile(r"secret|token|key|passw(or)?d|pwd|credential|auth|dsn|private|sig", re.IGNORECASE)

# scheme://user:password@ — the password ends at the last "@" before the path.
URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://(?P<user>[^\s:/?#@]*):)(?P<secret>[^\s/?#]+)@")
# name=value in a URL's query (``?``/``&`` inside a word) or standing alone (``password=x host=y``).
QUERY_VALUE = re.compile(
    r"(?P<head>(?:(?<=\S)[?&]|(?<![^\s,;(]))(?P<name>[\w.\-\[\]%]+)=)(?P<secret>[^\s&#'\"<>,;)]+)"
)
URL_START = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://")


class MaskedValueError(ValueError):
    """A value sent back with a masked part for which nothing is stored."""


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


# ---- text -------------------------------------------------------------------


def mask_text(text: str) -> str:
    """``text`` with URL passwords and credential-like query values replaced by the marker."""
    if "://" in text:
        text = URL_PASSWORD.sub(lambda m: f"{m['head']}{MARKER}@", text)
    if "=" in text:
        text = QUERY_VALUE.sub(_mask_parameter, text)
    return text


def _mask_parameter(match: re.Match) -> str:
    if SECRET_PARAMETER.search(match["name"]):
        return f"{match['head']}{MARKER}"
    return match[0]


def mask_values(value: Any) -> Any:
    """Every string inside ``value`` (dicts, lists) passed through ``mask_text``."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {key: mask_values(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_values(item) for item in value]
    return value


SCRUB_MIN_CHARS = 4  # shorter values are ordinary words and letters of the message itself


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` without any of ``secrets`` in it (an error message about a secret must not repeat it)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= SCRUB_MIN_CHARS and secret != MARKER:
            text = text.replace(secret, MARKER)
    return mask_text(text)


def strings_in(value: Any) -> list[str]:
    """The text of every leaf of ``value``: what must not be echoed when ``value`` is a secret."""
    if isinstance(value, dict):
        return [text for item in value.values() for text in strings_in(item)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in strings_in(item)]
    if value is None or isinstance(value, bool):
        return []
    return [str(value)]


# ---- configuration trees ----------------------------------------------------


def hide(value: Any, keep_url: bool = False) -> Any:
    """A secret shown: every non-empty leaf becomes the marker.

    With ``keep_url`` (a schema key known to hold a URL, such as ``database.url``), a URL only
    loses its password: which database or Redis the service uses is worth seeing.
    """
    if isinstance(value, dict):
        return {key: hide(item, keep_url) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [hide(item, keep_url) for item in value]
    if value is None or value == "" or isinstance(value, bool):
        return value  # nothing to hide: an empty secret or a switch
    if keep_url and isinstance(value, str) and URL_START.match(value):
        return mask_text(value)
    return MARKER


def redact(value: Any, verdict: Callable[[tuple], bool | None], path: tuple = ()) -> Any:
    """A copy of a configuration tree with its secrets hidden.

    ``verdict(path)`` says whether the schema marks the key at ``path`` secret (True/False), or
    None when the schema does not describe it: then the key's name decides, and a name that says
    secret hides all of the value, URL or not (a Sentry DSN carries its key as the URL's user).
    """
    if isinstance(value, dict):
        shown = {}
        for key, item in value.items():
            inner = (*path, key)
            secret = verdict(inner)
            if secret:
                shown[key] = hide(item, keep_url=True)
            elif secret is None and is_secret_name(str(key)):
                shown[key] = hide(item)
            else:
                shown[key] = redact(item, verdict, inner)
        return shown
    if isinstance(value, (list, tuple)):
        return [redact(item, verdict, path) for item in value]
    if isinstance(value, str):
        return mask_text(value)
    return value


def is_secret_path(path: tuple, verdict: Callable[[tuple], bool | None]) -> bool:
    """Whether ``redact`` hides the value at ``path`` (as a whole, by the key or a table above it)."""
    for depth in range(1, len(path) + 1):
        secret = verdict(path[:depth])
        if secret is None:
            secret = is_secret_name(str(path[depth - 1]))
        if secret:
            return True
    return False


# ---- values sent back -------------------------------------------------------

KEEP = object()  # check_patch: the stored value stays as it is


def contains_marker(value: Any) -> bool:
    return any(MARKER in text for text in strings_in(value))


def unmask(value: Any, stored: Any, secret: bool) -> Any:
    """The value a client meant by sending back what it was shown; ``KEEP`` when that is the stored one.

    Raises ``MaskedValueError`` when a masked part has nothing stored to stand for.
    """
    if not contains_marker(value):
        return value
    if secret and value == MARKER:
        return KEEP  # the plain marker for a secret always means "unchanged", even when nothing is stored
    restored = _restore(value, stored)
    return KEEP if restored == stored else restored


def _restore(value: Any, stored: Any) -> Any:
    if isinstance(value, list):
        previous = stored if isinstance(stored, list) else []
        return [_restore(item, previous[i] if i < len(previous) else None) for i, item in enumerate(value)]
    if value == MARKER:
        if stored in (None, "", [], {}):
            raise MaskedValueError(f"{MARKER} stands for a stored secret, and none is stored here")
        return stored
    if isinstance(value, str) and MARKER in value:
        return _restore_text(value, stored if isinstance(stored, str) else "")
    return value


def _restore_text(text: str, stored: str) -> str:
    """Masked URL passwords and query values taken back from the stored text (by user, by name)."""
    passwords = {m["head"]: m["secret"] for m in URL_PASSWORD.finditer(stored)}
    parameters = {m["name"]: m["secret"] for m in QUERY_VALUE.finditer(stored)}

    def password(match: re.Match) -> str:
        if match["secret"] != MARKER:
            return match[0]
        if match["head"] not in passwords:
            raise MaskedValueError(f"the password of {match['head']}...@ is masked; send the password itself")
        return f"{match['head']}{passwords[match['head']]}@"

    def parameter(match: re.Match) -> str:
        if match["secret"] != MARKER:
            return match[0]
        if match["name"] not in parameters:
            raise MaskedValueError(f"the value of {match['name']}= is masked; send the value itself")
        return f"{match['head']}{parameters[match['name']]}"

    text = QUERY_VALUE.sub(parameter, URL_PASSWORD.sub(password, text))
    if MARKER in text:
        raise MaskedValueError(f"{MARKER} stands for a stored secret, and none is stored here")
    return text
