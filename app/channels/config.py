"""A channel's table under ``[channels_config]``, read into the shape its type expects.

The section stays free-form for the settings schema (any channel name may be
configured); each table is checked here against its type's keys, so a typo or
a wrong value shows as that channel's error instead of stopping the service.
The type is the table's ``type`` key, or else its name (``[channels_config.telegram]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

BUILTIN = "api"  # the HTTP API itself: always there, never configured
TYPES = ("telegram", "discord", "slack", "webhook")

# key -> (python type, default); a default of None means the key is required.
COMMON = {"type": (str, ""), "enabled": (bool, True), "allowed_users": (list, [])}
KEYS = {
    "telegram": {"bot_token": (str, None), "api_url": (str, "https://api.telegram.org"),
                 "poll_timeout_secs": (int, 30)},
    "discord": {"bot_token": (str, None), "api_url": (str, "https://discord.com/api/v10"),
                "allowed_guilds": (list, [])},
    "slack": {"bot_token": (str, None), "app_token": (str, None), "api_url": (str, "https://slack.com/api")},
    # Senders are authenticated by the signature, so every user id they send is let in unless listed.
    "webhook": {"secret": (str, None), "allowed_users": (list, ["*"])},
}


class InvalidChannelConfig(ValueError):
    """A channel table that its type cannot use; the message says which key and why."""


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    type: str
    enabled: bool
    allowed_users: tuple[str, ...]
    options: dict = field(default_factory=dict)

    def get(self, key: str):
        return self.options[key]

    def allows(self, *identities) -> bool:
        """Whether a user known by any of ``identities`` (id, username) may talk here; empty allows nobody."""
        if "*" in self.allowed_users:
            return True
        names = {str(i) for i in identities if i not in (None, "")}
        names |= {f"@{n}" for n in names}
        return bool(names & set(self.allowed_users))


def channel_type(name: str, table: dict) -> str:
    declared = table.get("type") if isinstance(table, dict) else None
    return declared if isinstance(declared, str) and declared else name


def parse(name: str, table) -> ChannelConfig:
    """The channel's configuration; ``InvalidChannelConfig`` when its table cannot be used."""
    if not isinstance(table, dict):
        raise InvalidChannelConfig(f"channels_config.{name} must be a table")
    kind = channel_type(name, table)
    if kind not in TYPES:
        raise InvalidChannelConfig(f"unknown channel type {kind!r} (set type to one of: {', '.join(TYPES)})")
    keys = {**COMMON, **KEYS[kind]}
    unknown = sorted(set(table) - set(keys))
    if unknown:
        raise InvalidChannelConfig(f"unknown key channels_config.{name}.{unknown[0]}")
    values = {}
    for key, (expected, default) in keys.items():
        if key not in table:
            if default is None:
                raise InvalidChannelConfig(f"channels_config.{name}.{key} is required")
            values[key] = default
            continue
        values[key] = _checked(f"channels_config.{name}.{key}", table[key], expected)
    return ChannelConfig(name=name, type=kind, enabled=values.pop("enabled"),
                         allowed_users=tuple(str(u) for u in values.pop("allowed_users")),
                         options={k: v for k, v in values.items() if k != "type"})


def _checked(dotted: str, value, expected):
    if expected is bool and not isinstance(value, bool):
        raise InvalidChannelConfig(f"{dotted}: expected true or false")
    if expected is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidChannelConfig(f"{dotted}: expected a positive integer")
    if expected is str and not isinstance(value, str):
        raise InvalidChannelConfig(f"{dotted}: expected a string")
    if expected is list:
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                  for v in value):
            raise InvalidChannelConfig(f"{dotted}: expected a list of ids or names")
    return value


def configured(settings) -> dict[str, dict]:
    """Every channel table as written, by name (the built-in ``api`` is never one of them)."""
    tables = settings.get("channels_config") or {}
    return {name: table for name, table in tables.items() if name != BUILTIN}
