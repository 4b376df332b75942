"""The configuration API's own rate-limit group."""

from app.core.fields import Field

SECTIONS = {
    "rate_limits": {
        "config_write": Field("limit", "5/s", help="Limit of PATCH /api/v1/config."),
    },
}
