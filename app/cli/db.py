import click
from flask import current_app

from app.core import migrate
from app.core.db import connection, iso

group = click.Group("db", help="Database schema migrations.")


@group.command("upgrade")
@click.option("--create-empty", is_flag=True,
              help="Start an empty database in place of a lost SQLite file (otherwise refused).")
def upgrade(create_empty):
    """Apply pending migrations; take a restored SQLite file as the database; create it on a first install."""
    state = current_app.extensions["lockgate"]
    migrate.accept_current_file(state.settings, create_empty)
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
