"""The signed tool package: a tar of the tool's source, a manifest, its signature and the certificate chain.

Layout (docs/review.md, "Signed package")::

    manifest.json        tool, review decision, SHA-256 of every other file, signed_at, key_id
    signature.sig        RSA-SHA256 (PKCS#1 v1.5) signature of manifest.json, raw bytes
    certs/signing.pem    the signing certificate (codeSigning)
    certs/root.pem       the root CA that issued it (trust your own copy, not this one)
    source/tool.<ext>    the reviewed source (tool.json: the tool schema)
    schemapin.json       the SchemaPin signature of the tool schema, when configured

The archive is built deterministically (fixed order, times and owners), so a
verifier rebuilds it from its members and compares: no byte of the file can
change, not even tar padding, without the package failing verification.
Everything needed to verify is inside; only the trusted root comes from elsewhere.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from datetime import UTC, datetime

from app.review import signing
from app.review.signing import VerificationError

FORMAT = "lockgate-tool-package/1"
MANIFEST, SIGNATURE, SIGNING_CERT, ROOT_CERT, SCHEMAPIN = (
    "manifest.json", "signature.sig", "certs/signing.pem", "certs/root.pem", "schemapin.json")
EXTENSIONS = {"python": "py", "javascript": "js", "typescript": "ts"}
MAX_PACKAGE_BYTES = 64 * 1024 * 1024
MAX_MEMBERS = 32
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def source_path(language: str | None) -> str:
    return f"source/tool.{EXTENSIONS.get(language or '', 'json')}"


def file_name(tool_name: str, tool_version: str) -> str:
    return f"{SAFE_NAME.sub('_', tool_name)[:100]}-{SAFE_NAME.sub('_', tool_version)[:50]}.tar"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(signer: signing.Signer, files: dict[str, bytes], manifest_fields: dict, signed_at: datetime):
    """The package bytes, the manifest text and the signature for ``files`` (path -> content)."""
    manifest = {
        "format": FORMAT,
        **manifest_fields,
        "files": {path: sha256(data) for path, data in sorted(files.items())},
        "signed_at": _iso(signed_at),
        "key_id": signer.key_id,
        "algorithm": signing.ALGORITHM,
    }
    # One key per line (indent), so a shell can check each file's hash with grep (docs/review.md).
    manifest_text = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=True) + "\n"
    signature = signer.sign(manifest_text.encode())
    chain = signer.chain_pem()
    members = {**files, MANIFEST: manifest_text.encode(), SIGNATURE: signature,
               SIGNING_CERT: chain[0].encode(), ROOT_CERT: chain[1].encode()}
    return archive(members, int(signed_at.replace(tzinfo=UTC).timestamp())), manifest_text, signature


def _iso(moment: datetime) -> str:
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def archive(members: dict[str, bytes], mtime: int) -> bytes:
    """The one tar a set of members makes: sorted, regular files, fixed owner and mode."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(members):
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(members[path]), mtime, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(members[path]))
    return out.getvalue()


def read(data: bytes) -> tuple[dict[str, bytes], int]:
    """The members of a package and their mtime; ``VerificationError`` for anything but a plain package."""
    if len(data) > MAX_PACKAGE_BYTES:
        raise VerificationError("the package is too large")
    members: dict[str, bytes] = {}
    mtimes = set()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                if len(members) >= MAX_MEMBERS:
                    raise VerificationError("the package has too many files")
                if not info.isreg() or info.name.startswith("/") or ".." in info.name.split("/"):
                    raise VerificationError(f"unexpected entry {info.name!r} in the package")
                if info.name in members:
                    raise VerificationError(f"{info.name} appears twice in the package")
                members[info.name] = tar.extractfile(info).read()
                mtimes.add(info.mtime)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise VerificationError(f"not a readable package: {exc}") from None
    if len(mtimes) != 1:
        raise VerificationError("not a package made by Lockgate")
    return members, mtimes.pop()


def verify(data: bytes, roots, now: datetime | None = None) -> dict:
    """Check a package against trusted roots: chain, codeSigning, validity, signature, every hash, every byte.

    Returns the manifest; raises ``VerificationError`` naming the first check that failed.
    """
    members, mtime = read(data)
    for required in (MANIFEST, SIGNATURE, SIGNING_CERT):
        if required not in members:
            raise VerificationError(f"the package has no {required}")
    manifest_bytes = members[MANIFEST]
    try:
        manifest = json.loads(manifest_bytes)
        signed_at = datetime.fromisoformat(manifest["signed_at"].replace("Z", "+00:00"))
        listed = dict(manifest["files"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise VerificationError("the manifest is not valid") from None
    if signed_at > (now or datetime.now(UTC)) + signing.CLOCK_SKEW:
        raise VerificationError("the manifest is dated in the future")
    (certificate,) = signing.load_certificates([members[SIGNING_CERT].decode(errors="replace")])
    signing.check_chain(certificate, [], list(roots), signed_at)
    if signing.key_id_of(certificate.public_key()) != manifest.get("key_id"):
        raise VerificationError("the manifest's key_id is not the signing certificate's")
    signing.check_signature(certificate, members[SIGNATURE], manifest_bytes)
    extra = set(members) - set(listed) - {MANIFEST, SIGNATURE, SIGNING_CERT, ROOT_CERT}
    if extra:
        raise VerificationError(f"files not in the manifest: {', '.join(sorted(extra))}")
    for path, digest in listed.items():
        if path not in members:
            raise VerificationError(f"{path} is missing")
        if sha256(members[path]) != digest:
            raise VerificationError(f"{path} does not match its SHA-256 in the manifest")
    if archive(members, mtime) != data:
        raise VerificationError("the archive was altered (its bytes are not those it was built with)")
    return manifest
