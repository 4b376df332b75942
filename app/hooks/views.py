"""How a hook is shown: by the API and in its own events. Never with its secret."""

from app.hooks.models import Hook
from app.hooks.schemas import HookSchema

_HOOK = HookSchema()


def hook_view(hook: Hook) -> dict:
    return _HOOK.dump(hook)
