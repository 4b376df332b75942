from contextlib import contextmanager
from datetime import timedelta

import click
from flask import current_app

from app.core import auth
from app.core import logging as core_logging
from app.core.db import connection, iso, utcnow
from app.core.timeparse import parse_duration

group = click.Group("auth", help="Manage API tokens.")

# Suggested verbatim by ``bootstrap``: run from the checkout, where ``make run`` made the virtualenv.
NEW_ADMIN_TOKEN = ".venv/bin/flask --app wsgi auth token --name admin --scope admin"


@contextmanager
def _recorded():
    """A database connection, with the log records of the command stored as a worker's are (module ``auth``)."""
    core_logging.install(current_app.extensions["lockgate"].settings.get("logs.level"))
    with connection():
        yield
    core_logging.flush()


@group.command("token")
@click.option("--name", required=True, help="What the token is for.")
@click.option("--scope", "scopes", multiple=True, required=True, type=click.Choice(auth.SCOPES),
              help="read, write, review (tool review decisions) or admin; repeat for several.")
@click.option("--expires", default=None,
              help="Lifetime such as 30d, 12h; default [auth] default_token_expiry_days, 0 meaning never.")
def create_token(name, scopes, expires):
    """Create a token and print it alone on the last line."""
    try:
        lifetime = parse_duration(expires) if expires else _default_lifetime()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expires") from None
    with _recorded():
        row, token = auth.create_token(name, list(scopes), lifetime)
    expiry = iso(row.expires_at) if row.expires_at else "never"
    click.echo(f"Created token {row.id} ({name}; scopes: {row.scopes}; expires: {expiry}).", err=True)
    click.echo("Store it now: it is not shown again.", err=True)
    click.echo(token)


def _default_lifetime():
    days = current_app.extensions["lockgate"].settings.get("auth.default_token_expiry_days")
    return timedelta(days=days) if days else None


@group.command("list")
def list_tokens():
    """List tokens (never their secrets)."""
    now = utcnow()
    with connection():
        rows = auth.list_tokens()
    click.echo(f"{'ID':<18}{'NAME':<24}{'SCOPES':<20}{'STATE':<10}EXPIRES")
    for row in rows:
        if row.revoked_at:
            state = "revoked"
        elif row.expires_at and row.expires_at <= now:
            state = "expired"
        else:
            state = "active"
        click.echo(f"{row.id:<18}{row.name[:23]:<24}{row.scopes:<20}{state:<10}{iso(row.expires_at) or 'never'}")


@group.command("revoke")
@click.argument("token_id")
def revoke(token_id):
    """Revoke a token by its id; it stops working at once in every worker."""
    with _recorded():
        done = auth.revoke(token_id)
    if not done:
        raise click.ClickException(f"no active token with id {token_id}")
    click.echo(f"Revoked token {token_id}.")


@group.command("bootstrap")
def bootstrap():
    """Create a first admin token when there is none yet (used by `make run`)."""
    with _recorded():
        if auth.list_tokens():
            click.echo(f"API tokens exist already; create another with `{NEW_ADMIN_TOKEN}`.", err=True)
            return
        _row, token = auth.create_token("bootstrap admin", ["admin"])
    click.echo("First admin token (store it now, it is not shown again):", err=True)
    click.echo(token)
