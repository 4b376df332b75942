"""``flask --app wsgi ...`` maintenance commands, one module per group."""


def register(app) -> None:
    from app.cli import auth, config, db, logs

    for group in (auth.group, config.group, db.group, logs.group):
        app.cli.add_command(group)
