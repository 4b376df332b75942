"""Code-signing keys: a root CA, signing keys it certifies for code signing, and checking what they signed.

Signatures are RSA-SHA256 (PKCS#1 v1.5) by keys of at least 3072 bits, each
with a certificate (``codeSigning`` extended key usage) issued by a root CA,
so a verifier trusts one root and every key it ever certified: after
``rotate`` new packages are signed by the new key, and packages signed by the
old ones still verify. The key directory holds::

    root.pem            the root CA certificate (root.key too, when created here: needed to rotate)
    keys/<key_id>.pem   each signing certificate; keys/<key_id>.key its private key
    current             the key_id that signs now
    schemapin.key/.pem  the SchemaPin ECDSA P-256 key, when [review] signing = "schemapin"

Private keys are written mode 0600 (the directory 0700) and never leave this
module: nothing returns, logs or serialises them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ALGORITHM = "RSA-SHA256"
SCHEMAPIN_ALGORITHM = "ECDSA-P256-SHA256"
MIN_KEY_BITS = 3072
KEY_BITS = 3072
ROOT_DAYS = 3650
SIGNING_DAYS = 825
CLOCK_SKEW = timedelta(minutes=5)


class SigningError(Exception):
    """The keys are missing, unreadable or unfit; the message says which and what to do."""


class VerificationError(Exception):
    """What was signed does not verify; the message says which check failed."""


@dataclass(frozen=True)
class Signer:
    key_id: str
    certificate: x509.Certificate
    root: x509.Certificate
    _key: rsa.RSAPrivateKey

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def chain_pem(self) -> list[str]:
        """The signing certificate, then the root: what a verifier needs besides its trust in the root."""
        return [pem(self.certificate), pem(self.root)]

    def __repr__(self) -> str:  # never the key
        return f"Signer({self.key_id})"


@dataclass(frozen=True)
class SchemaPinSigner:
    _key: ec.EllipticCurvePrivateKey

    def public_key_pem(self) -> str:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, schema: dict) -> str:
        """SchemaPin: ECDSA P-256 over the SHA-256 of the schema's canonical JSON, base64 of the DER signature.

        The digest itself is the signed message, which ECDSA-SHA256 hashes once more: that is what
        SchemaPin's own libraries sign and verify, so a signature over the canonical bytes would not verify.
        """
        digest = hashlib.sha256(canonical_json(schema)).digest()
        return base64.b64encode(self._key.sign(digest, ec.ECDSA(hashes.SHA256()))).decode()

    def __repr__(self) -> str:
        return "SchemaPinSigner()"


# ---- the key directory ---------------------------------------------------------------


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def key_id_of(public_key) -> str:
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "lgk-" + hashlib.sha256(spki).hexdigest()[:16]


def _private(path: Path, key) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _public(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    tmp.write_text(text, encoding="ascii")
    os.replace(tmp, path)


def _prepare(directory: Path) -> None:
    (directory / "keys").mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    os.chmod(directory / "keys", 0o700)


def has_keys(directory: Path) -> bool:
    return (directory / "current").is_file()


def init(directory: Path, organisation: str = "Lockgate") -> str:
    """A new root CA and a first signing key it certifies; refuses to replace existing keys."""
    if (directory / "root.pem").exists():
        raise SigningError(f"{directory} already holds signing keys: use `flask signing rotate` for a new key")
    _prepare(directory)
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    root = _root_certificate(root_key, organisation)
    _private(directory / "root.key", root_key)
    _public(directory / "root.pem", pem(root))
    return _new_signing_key(directory, root, root_key, organisation)


def rotate(directory: Path) -> str:
    """A new signing key certified by the same root; the old ones stay, so what they signed still verifies."""
    root, root_key = _root(directory), _root_key(directory)
    organisation = _organisation(root)
    return _new_signing_key(directory, root, root_key, organisation)


def import_pem(directory: Path, key_data: bytes, cert_data: bytes, root_data: bytes) -> str:
    """Use a signing key and certificate issued elsewhere; ``root_data`` is the root CA that issued it."""
    try:
        key = serialization.load_pem_private_key(key_data, password=None)
        certificate = x509.load_pem_x509_certificate(cert_data)
        root = x509.load_pem_x509_certificate(root_data)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"not a PEM key or certificate: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_KEY_BITS:
        raise SigningError(f"the signing key must be RSA of at least {MIN_KEY_BITS} bits")
    if key.public_key().public_numbers() != certificate.public_key().public_numbers():
        raise SigningError("the certificate is not the key's")
    try:
        check_chain(certificate, [root], [root], datetime.now(UTC))
    except VerificationError as exc:
        raise SigningError(f"the certificate does not fit: {exc}") from None
    existing = directory / "root.pem"
    if existing.exists() and x509.load_pem_x509_certificate(existing.read_bytes()) != root:
        raise SigningError(f"{directory} trusts another root CA: import into an empty key directory")
    _prepare(directory)
    if not existing.exists():
        _public(existing, pem(root))
    key_id = key_id_of(key.public_key())
    if not (directory / "keys" / f"{key_id}.key").exists():
        _private(directory / "keys" / f"{key_id}.key", key)
    _public(directory / "keys" / f"{key_id}.pem", pem(certificate))
    _public(directory / "current", key_id + "\n")
    return key_id


def _new_signing_key(directory: Path, root: x509.Certificate, root_key, organisation: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    key_id = key_id_of(key.public_key())
    certificate = _signing_certificate(key, key_id, root, root_key, organisation)
    _private(directory / "keys" / f"{key_id}.key", key)
    _public(directory / "keys" / f"{key_id}.pem", pem(certificate))
    _public(directory / "current", key_id + "\n")
    return key_id


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _root_certificate(key, organisation: str) -> x509.Certificate:
    now = datetime.now(UTC)
    name = _name(f"{organisation} Tool Signing Root CA", organisation)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + timedelta(days=ROOT_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))


def _signing_certificate(key, key_id: str, root: x509.Certificate, root_key, organisation: str) -> x509.Certificate:
    now = datetime.now(UTC)
    until = min(now + timedelta(days=SIGNING_DAYS), root.not_valid_after_utc)
    return (x509.CertificateBuilder().subject_name(_name(f"{organisation} tool signing {key_id}", organisation))
            .issuer_name(root.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW).not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))


def _organisation(root: x509.Certificate) -> str:
    names = root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(names[0].value) if names else "Lockgate"


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SigningError(f"no {what} at {path}: run `flask signing init` (or `flask signing import`)") from None


def _root(directory: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(_read(directory / "root.pem", "root CA certificate"))


def _root_key(directory: Path):
    path = directory / "root.key"
    if not path.exists():
        raise SigningError(f"{directory} has no root CA key (the root was imported): import a new signing key")
    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def current_key_id(directory: Path) -> str:
    return _read(directory / "current", "signing key").decode().strip()


def signer(directory: Path) -> Signer:
    """The key that signs now, with its certificate and root."""
    key_id = current_key_id(directory)
    key = serialization.load_pem_private_key(_read(directory / "keys" / f"{key_id}.key", "signing key"),
                                             password=None)
    certificate = x509.load_pem_x509_certificate(_read(directory / "keys" / f"{key_id}.pem", "certificate"))
    return Signer(key_id, certificate, _root(directory), key)


def schemapin_signer(directory: Path) -> SchemaPinSigner:
    """The SchemaPin key, created on first use (an ECDSA P-256 key costs nothing to make)."""
    path = directory / "schemapin.key"
    if not path.exists():
        _prepare(directory)
        try:
            _private(path, ec.generate_private_key(ec.SECP256R1()))
        except FileExistsError:
            pass  # another worker made it first
    return SchemaPinSigner(serialization.load_pem_private_key(path.read_bytes(), password=None))


def keys(directory: Path) -> list[dict]:
    """Every signing key's id, validity and whether it signs now (public facts only)."""
    current = current_key_id(directory) if has_keys(directory) else None
    found = []
    for path in sorted((directory / "keys").glob("*.pem")):
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
        found.append({"key_id": path.stem, "current": path.stem == current,
                      "not_after": certificate.not_valid_after_utc, "subject": certificate.subject.rfc4514_string()})
    return found


def trusted_roots(directory: Path) -> list[x509.Certificate]:
    return [_root(directory)]


# ---- verifying -------------------------------------------------------------------------


def canonical_json(value) -> bytes:
    """SchemaPin's canonical form: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def verify_schemapin(schema, signature: str, public_key_pem: str) -> None:
    """That ``signature`` (base64 DER) is a SchemaPin signature of ``schema`` by the P-256 key in ``public_key_pem``."""
    try:
        key = serialization.load_pem_public_key(public_key_pem.encode())
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise VerificationError("the SchemaPin key is not an ECDSA P-256 key")
        digest = hashlib.sha256(canonical_json(schema)).digest()
        key.verify(base64.b64decode(signature, validate=True), digest, ec.ECDSA(hashes.SHA256()))
    except (ValueError, TypeError, InvalidSignature):  # a bad PEM or base64 is a ValueError too
        raise VerificationError("the SchemaPin signature does not verify") from None


def load_certificates(pems: list[str]) -> list[x509.Certificate]:
    try:
        return [x509.load_pem_x509_certificate(text.encode()) for text in pems]
    except ValueError as exc:
        raise VerificationError(f"a certificate of the chain does not parse: {exc}") from None


def check_chain(certificate: x509.Certificate, chain: list[x509.Certificate], roots: list[x509.Certificate],
                at: datetime) -> x509.Certificate:
    """That ``certificate`` may sign code at ``at``, issued by one of ``roots``; returns that root.

    The certificate must be valid then, have the codeSigning extended key usage
    and a digital-signature key usage, and be issued directly by a trusted
    root (a CA certificate valid then); ``chain`` is what came with it and is
    only trusted through a root.
    """
    _valid_at(certificate, at, "the signing certificate")
    try:
        usage = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise VerificationError("the signing certificate has no extended key usage") from None
    if ExtendedKeyUsageOID.CODE_SIGNING not in usage:
        raise VerificationError("the signing certificate is not for code signing")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_KEY_BITS:
        raise VerificationError(f"the signing key is not RSA of at least {MIN_KEY_BITS} bits")
    for root in roots:
        if root.subject != certificate.issuer:
            continue
        try:
            certificate.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            continue
        _valid_at(root, at, "the root CA")
        try:
            constraints = root.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise VerificationError("the trusted root is not a CA certificate")
        return root
    raise VerificationError("the signing certificate was not issued by a trusted root")


def _valid_at(certificate: x509.Certificate, at: datetime, what: str) -> None:
    if not certificate.not_valid_before_utc - CLOCK_SKEW <= at <= certificate.not_valid_after_utc:
        raise VerificationError(f"{what} was not valid at {at.isoformat()}")


def check_signature(certificate: x509.Certificate, signature: bytes, data: bytes) -> None:
    try:
        certificate.public_key().verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise VerificationError("the signature does not match the manifest") from None
