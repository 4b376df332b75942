"""The sessions API's rate-limit groups (its turns are configured under [agent])."""

from app.core.fields import Field

SECTIONS = {
    "rate_limits": {
        "sessions_write": Field("limit", "10/s", help="Limit of creating and deleting sessions and sending messages."),
        "sessions_read": Field("limit", "50/s", help="Limit of listing and reading sessions and their messages."),
    },
}
