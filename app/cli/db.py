import click
from flask import current_app

from app.core import migrate
from app.core.db import connection, iso

group = click.Group("db", help="Database schema migrations.")


@group.command("upgrade")
def upgrade():
    """Apply pending migrations; create the SQLite database if it is missing, or accept it if it was replaced."""
    state = current_app.extensions["lockgate"]
    migrate.accept_current_file(state.settings)
    with connection():
        ran = migrate.upgrade()
    # Loading the application already applied what was pending: those count too.
    ran = state.migrations_applied + ran
    click.echo("\n".join(f"applied {name}" for name in ran) or "database is up to date")


@group.command("status")
def status():
    """List migrations and when each was applied."""
    with connection():
        rows = migrate.status()
    for name, applied_at in rows:
        click.echo(f"{name:<40}{iso(applied_at) if applied_at else 'pending'}")
