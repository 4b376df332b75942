"""``flask config show``: what the service runs with, its secrets hidden as the API hides them.

It prints ``Settings.redacted()``, the same view as ``GET /api/v1/config``, so a terminal
or a pasted support log never carries a secret the API would hide.
"""

import click
from flask import current_app
from flask.cli import with_appcontext

from app.core import config_reference, jsonbody

group = click.Group("config", help="Inspect the runtime configuration.")


@group.command("show")
@with_appcontext
def show():
    """Print the configuration with secrets redacted."""
    settings = current_app.extensions["lockgate"].settings
    click.echo(f"# {settings.path}{'' if settings.path.exists() else ' (not present: built-in defaults)'}")
    click.echo(jsonbody.dumps(settings.redacted(), indent=2))


@group.command("reference")
def reference():
    """Print the configuration reference (docs/configuration.md): every key, its default and range."""
    click.echo(config_reference.render(), nl=False)
