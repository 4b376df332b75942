"""Signing keys, the signed package and its three verifications: ours, `cryptography` alone, `openssl` alone."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import stat
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import ExtendedKeyUsageOID

from app.review import package, signing
from app.review.signing import SigningError, VerificationError
from tests.review.support import CLEAN_TOOL, copy_keys

OPENSSL = shutil.which("openssl")


@pytest.fixture
def keys(tmp_path):
    return copy_keys(tmp_path / "signing")


def signed_package(directory: Path, source: str = CLEAN_TOOL) -> bytes:
    fields = {"tool": {"name": "adder", "version": "1.0.0"},
              "review": {"review_id": "r-1", "decision": "approve", "conditions": ["x"], "risk_score": 0}}
    data, _manifest, _signature = package.build(signing.signer(directory), {"source/tool.py": source.encode()},
                                                fields, datetime.now(UTC).replace(tzinfo=None, microsecond=0))
    return data


def cryptography_only(data: bytes, root_pem: bytes) -> None:
    """The recipe of docs/review.md with nothing but `cryptography` and the standard library."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {member.name: tar.extractfile(member).read() for member in tar if member.isreg()}
    root = x509.load_pem_x509_certificate(root_pem)
    certificate = x509.load_pem_x509_certificate(files["certs/signing.pem"])
    certificate.verify_directly_issued_by(root)
    eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CODE_SIGNING in eku
    now = datetime.now(UTC)
    assert certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc
    certificate.public_key().verify(files["signature.sig"], files["manifest.json"], padding.PKCS1v15(),
                                    hashes.SHA256())
    manifest = json.loads(files["manifest.json"])
    for path, digest in manifest["files"].items():
        assert hashlib.sha256(files[path]).hexdigest() == digest, path


def openssl_recipe(data: bytes, root: Path, work: Path) -> subprocess.CompletedProcess:
    """docs/review.md, "Verifying with openssl", run as written."""
    work.mkdir()
    (work / "package.tar").write_bytes(data)
    script = (Path(__file__).resolve().parents[2] / "docs" / "review.md").read_text().split(
        "<!-- openssl-recipe -->")[1].split("```sh")[1].split("```")[0]
    return subprocess.run(["sh", "-e", "-c", script], cwd=work, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "ROOT": str(root), "PACKAGE": "package.tar"})


def test_keys_are_private_and_fit_for_code_signing(keys):
    assert stat.S_IMODE((keys / "root.key").stat().st_mode) == 0o600
    key_id = signing.current_key_id(keys)
    assert stat.S_IMODE((keys / "keys" / f"{key_id}.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    signer = signing.signer(keys)
    assert signer.certificate.public_key().key_size >= 3072 and "PRIVATE" not in repr(signer)
    eku = signer.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CODE_SIGNING]
    assert all("PRIVATE" not in text for text in signer.chain_pem())
    with pytest.raises(SigningError, match="already holds"):
        signing.init(keys)


def test_package_verifies_three_ways(keys, tmp_path):
    data = signed_package(keys)
    manifest = package.verify(data, signing.trusted_roots(keys))
    assert manifest["review"]["conditions"] == ["x"] and manifest["key_id"] == signing.current_key_id(keys)
    assert set(manifest["files"]) == {"source/tool.py"}
    cryptography_only(data, (keys / "root.pem").read_bytes())
    assert OPENSSL, "openssl is needed (.ci/run installs it)"
    result = openssl_recipe(data, keys / "root.pem", tmp_path / "work")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verified OK" in result.stdout and "source/tool.py: OK" in result.stdout


def offsets(data: bytes) -> dict[str, int]:
    """A byte inside each member's content, and one in the tar padding."""
    found = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            found[member.name] = member.offset_data + member.size // 2
            last = member
    found["padding"] = last.offset_data + last.size + 1
    return found


@pytest.mark.parametrize("member", ["source/tool.py", "manifest.json", "signature.sig", "certs/signing.pem"])
def test_any_changed_byte_fails_every_verification(keys, tmp_path, member):
    data = bytearray(signed_package(keys))
    position = offsets(bytes(data))[member]
    data[position] ^= 0x01
    tampered = bytes(data)
    with pytest.raises(VerificationError):
        package.verify(tampered, signing.trusted_roots(keys))
    with pytest.raises(Exception):  # noqa: B017 - any failure of the plain recipe will do
        cryptography_only(tampered, (keys / "root.pem").read_bytes())
    assert openssl_recipe(tampered, keys / "root.pem", tmp_path / "work").returncode != 0


def test_a_changed_padding_byte_fails_our_verification(keys):
    data = bytearray(signed_package(keys))
    data[offsets(bytes(data))["padding"]] = 0x41
    with pytest.raises(VerificationError, match="altered"):
        package.verify(bytes(data), signing.trusted_roots(keys))


def test_rotation_keeps_old_packages_verifying(keys, tmp_path):
    before = signed_package(keys)
    old = signing.current_key_id(keys)
    new = signing.rotate(keys)
    assert new != old and signing.current_key_id(keys) == new
    after = signed_package(keys)
    roots = signing.trusted_roots(keys)
    assert package.verify(before, roots)["key_id"] == old
    assert package.verify(after, roots)["key_id"] == new
    assert {key["key_id"] for key in signing.keys(keys)} == {old, new}


def test_another_root_is_not_trusted(keys, tmp_path):
    other = tmp_path / "other"
    signing.init(other, "Someone Else")
    with pytest.raises(VerificationError, match="trusted root"):
        package.verify(signed_package(other), signing.trusted_roots(keys))


def test_import_from_pem(keys, tmp_path):
    source = keys
    key_id = signing.current_key_id(source)
    target = tmp_path / "imported"
    imported = signing.import_pem(target, (source / "keys" / f"{key_id}.key").read_bytes(),
                                  (source / "keys" / f"{key_id}.pem").read_bytes(), (source / "root.pem").read_bytes())
    assert imported == key_id and stat.S_IMODE((target / "keys" / f"{key_id}.key").stat().st_mode) == 0o600
    package.verify(signed_package(target), signing.trusted_roots(source))
    with pytest.raises(SigningError, match="not the key"):
        signing.import_pem(tmp_path / "mismatch", (source / "root.key").read_bytes(),
                           (source / "keys" / f"{key_id}.pem").read_bytes(), (source / "root.pem").read_bytes())
    with pytest.raises(SigningError, match="does not fit"):  # the root is not a code-signing certificate
        signing.import_pem(tmp_path / "root-as-leaf", (source / "root.key").read_bytes(),
                           (source / "root.pem").read_bytes(), (source / "root.pem").read_bytes())


def test_cli_init_rotate_and_verify(app_factory, tmp_path):
    app = app_factory({"review": {"key_dir": str(tmp_path / "cli-keys")}})
    runner = app.test_cli_runner()
    with app.app_context():
        made = runner.invoke(args=["signing", "init"])
        assert made.exit_code == 0, made.output
        first = signing.current_key_id(tmp_path / "cli-keys")
        path = tmp_path / "tool.tar"
        path.write_bytes(signed_package(tmp_path / "cli-keys"))
        assert runner.invoke(args=["signing", "rotate"]).exit_code == 0
        verified = runner.invoke(args=["tools", "verify", str(path)])
        assert verified.exit_code == 0 and "OK: adder 1.0.0" in verified.output and first in verified.output
        root = str(tmp_path / "cli-keys" / "root.pem")
        with_root = runner.invoke(args=["tools", "verify", str(path), "--root", root])
        assert with_root.exit_code == 0
        data = bytearray(path.read_bytes())
        data[offsets(bytes(data))["source/tool.py"]] ^= 0x20
        path.write_bytes(bytes(data))
        failed = runner.invoke(args=["tools", "verify", str(path)])
        assert failed.exit_code != 0 and "verification failed" in failed.output
        listed = runner.invoke(args=["signing", "list"])
        assert listed.exit_code == 0 and "PRIVATE" not in listed.output and len(listed.output.splitlines()) == 2


def test_schemapin_signature_verifies_over_canonical_json(keys):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pin = signing.schemapin_signer(keys)
    schema = {"name": "weather", "description": "Ünïcode", "inputSchema": {"b": 1, "a": [1, 2]}}
    signature = pin.sign(schema)
    public = serialization.load_pem_public_key(pin.public_key_pem().encode())
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    # As SchemaPin signs: the SHA-256 digest is the message (tests/review/test_schemapin_interop.py checks it
    # against the schemapin package itself).
    public.verify(base64.b64decode(signature), hashlib.sha256(canonical).digest(), ec.ECDSA(hashes.SHA256()))
    assert stat.S_IMODE((keys / "schemapin.key").stat().st_mode) == 0o600
