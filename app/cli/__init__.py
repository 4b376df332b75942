"""``flask --app wsgi ...`` maintenance commands, one module per group.

The platform's own groups are here; areas declare theirs (``app.core.areas``).
"""


def core_groups() -> tuple:
    from app.cli import auth, db

    return (auth.group, db.group)
