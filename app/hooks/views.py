"""How a hook is shown: by the API and in its own events. Never with its secret."""

from app.core.db import iso
from app.hooks.models import Hook


def hook_view(hook: Hook) -> dict:
    return {
        "id": hook.id,
        "url": hook.url,
        "events": hook.event_list,
        "active": hook.active,
        "created_at": iso(hook.created_at),
        "updated_at": iso(hook.updated_at),
        "disabled_reason": hook.disabled_reason,
        "consecutive_failures": hook.consecutive_failures,
    }
