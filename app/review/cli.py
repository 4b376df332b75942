"""``flask review ...``: maintenance commands of the Tool Review area."""

import click
from flask.cli import with_appcontext

from app.core.db import connection
from app.review import knowledge

group = click.Group("review", help="Tool Review: knowledge base and reviews.")
kb = click.Group("kb", help="The security knowledge base behind review insights.")
group.add_command(kb)


@kb.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@with_appcontext
def import_command(path):
    """Add or update the entries of a JSON or TOML knowledge file."""
    try:
        source, entries = knowledge.read_import(path)
    except knowledge.KnowledgeFileError as exc:
        raise click.ClickException(str(exc)) from None
    with connection(), click.progressbar(length=len(entries), label=f"Importing {len(entries)} entries") as bar:
        counts = knowledge.import_entries(source, entries, bar.update)
    click.echo(f"{counts['added']} added, {counts['updated']} updated, {counts['unchanged']} unchanged "
               f"(source {source})")


@kb.command("load-builtin")
@with_appcontext
def load_builtin_command():
    """Put the entries shipped with Lockgate in the database (safe to repeat)."""
    with connection():
        counts = knowledge.load_builtin()
    click.echo(f"{counts['added']} added, {counts['updated']} updated, {counts['removed']} removed")


# ---- signing keys and package verification ---------------------------------------------

signing_group = click.Group("signing", help="Tool Review code-signing keys (RSA-SHA256 with a certificate chain).")
tools_group = click.Group("tools", help="Signed tool packages.")


def _key_dir():
    from flask import current_app

    from app.review.service import key_dir

    return key_dir(current_app.extensions["lockgate"].settings)


def _signing_errors():
    from app.review import signing

    return (signing.SigningError, OSError)


@signing_group.command("init")
@click.option("--organisation", default="Lockgate", show_default=True, help="Organisation named in the certificates.")
@with_appcontext
def signing_init(organisation):
    """Create a root CA and a first signing key (RSA 3072, codeSigning certificate)."""
    from app.review import signing

    directory = _key_dir()
    try:
        key_id = signing.init(directory, organisation)
    except _signing_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Signing key {key_id} created in {directory}; trust {directory / 'root.pem'} to verify packages.")


@signing_group.command("rotate")
@with_appcontext
def signing_rotate():
    """A new signing key from the same root; packages signed by the old keys still verify."""
    from app.review import signing

    try:
        key_id = signing.rotate(_key_dir())
    except _signing_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Signing key {key_id} now signs; earlier keys remain trusted through the same root.")


@signing_group.command("import")
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The signing key, PEM (RSA, at least 3072 bits, unencrypted).")
@click.option("--cert", "cert_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Its certificate, PEM, with the codeSigning extended key usage.")
@click.option("--root", "root_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The root CA certificate that issued it, PEM.")
@with_appcontext
def signing_import(key_path, cert_path, root_path):
    """Sign with a key and certificate issued by your own CA."""
    from pathlib import Path

    from app.review import signing

    try:
        key_id = signing.import_pem(_key_dir(), Path(key_path).read_bytes(), Path(cert_path).read_bytes(),
                                    Path(root_path).read_bytes())
    except _signing_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Signing key {key_id} imported; it signs from now on.")


@signing_group.command("list")
@with_appcontext
def signing_list():
    """The signing keys (ids and validity only)."""
    from app.core.db import iso
    from app.review import signing

    for key in signing.keys(_key_dir()):
        marker = "*" if key["current"] else " "
        click.echo(f"{marker} {key['key_id']}  until {iso(key['not_after'].replace(tzinfo=None))}  {key['subject']}")


@tools_group.command("verify")
@click.argument("package_path", metavar="PACKAGE", type=click.Path(exists=True, dir_okay=False))
@click.option("--root", "root_path", type=click.Path(exists=True, dir_okay=False),
              help="The trusted root CA, PEM; default: this installation's.")
@with_appcontext
def tools_verify(package_path, root_path):
    """Verify a signed package offline: chain, codeSigning, validity, signature and every file's hash."""
    from pathlib import Path

    from cryptography import x509

    from app.review import package, signing

    try:
        if root_path:
            roots = x509.load_pem_x509_certificates(Path(root_path).read_bytes())
        else:
            roots = signing.trusted_roots(_key_dir())
        manifest = package.verify(Path(package_path).read_bytes(), roots)
    except (signing.VerificationError, signing.SigningError, ValueError) as exc:
        raise click.ClickException(f"verification failed: {exc}") from None
    tool = manifest.get("tool", {})
    click.echo(f"OK: {tool.get('name')} {tool.get('version')} (review {manifest['review']['review_id']}, "
               f"key {manifest['key_id']}, signed {manifest['signed_at']})")
