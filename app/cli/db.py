import click

from app.core import migrate
from app.core.db import connection, iso

group = click.Group("db", help="Database schema migrations.")


@group.command("upgrade")
def upgrade():
    """Apply pending migrations (also done at start-up)."""
    with connection():
        ran = migrate.upgrade()
    click.echo("\n".join(f"applied {name}" for name in ran) or "database is up to date")


@group.command("status")
def status():
    """List migrations and when each was applied."""
    with connection():
        rows = migrate.status()
    for name, applied_at in rows:
        click.echo(f"{name:<40}{iso(applied_at) if applied_at else 'pending'}")
