import json

import click
from flask import current_app

group = click.Group("config", help="Inspect the runtime configuration.")


@group.command("show")
def show():
    """Print the configuration with secrets redacted."""
    settings = current_app.extensions["lockgate"].settings
    click.echo(f"# {settings.path}{'' if settings.path.exists() else ' (not present: built-in defaults)'}")
    click.echo(json.dumps(settings.redacted(), indent=2))
