"""Lockgate's SchemaPin signatures against the real ``schemapin`` package, both ways.

schemapin pins old releases of its dependencies, so it runs in a virtual
environment of its own (made once, kept in pytest's cache directory or the
temp directory). A script there reads a JSON request on stdin and answers
what schemapin's own functions say: its canonical form, its signature check
(low level, and the offline verification flow an agent runs), its public-key
loading from PEM, and signatures made with its own keys. What is checked is
what an agent receives: the signer's output, and the ``schemapin.json`` and
``signature_info.schemapin`` of a review signed through the API.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import subprocess
import tarfile
import textwrap
from pathlib import Path

import pytest

from app.review import package, signing
from app.review.signing import VerificationError
from tests.review.support import RELAXED, copy_keys, running_pool, submission
from tests.support.venvs import package_python
from tests.support.wait import wait_until

SCHEMAPIN = "schemapin==1.3.0"
BASE = "/api/v1/tool-review"

CHECK = textwrap.dedent('''
    import base64, json, sys
    import schemapin
    from schemapin import KeyManager, KeyPinStore, SchemaPinCore, SchemaSigningWorkflow, SignatureManager
    from schemapin import verify_schema_offline

    request = json.load(sys.stdin)

    def verified(item):
        key = KeyManager.load_public_key_pem(item["public_key_pem"])
        digest = SchemaPinCore.canonicalize_and_hash(item["schema"])
        low = SignatureManager.verify_schema_signature(digest, item["signature"], key)
        discovery = {"schema_version": "1.2", "developer_name": "Lockgate", "public_key_pem": item["public_key_pem"]}
        flow = verify_schema_offline(item["schema"], item["signature"], "lockgate.example", "tool", discovery,
                                     None, KeyPinStore())
        return {"low": low, "flow": flow.valid, "error": flow.error_code.value if flow.error_code else None}

    def canonical(schema):
        return base64.b64encode(SchemaPinCore.canonicalize_schema(schema).encode("utf-8")).decode()

    def signed(schema):
        private, public = KeyManager.generate_keypair()
        workflow = SchemaSigningWorkflow(KeyManager.export_private_key_pem(private))
        return {"signature": workflow.sign_schema(schema), "public_key_pem": KeyManager.export_public_key_pem(public)}

    print(json.dumps({"version": schemapin.__version__, "module": schemapin.__file__,
                      "verified": [verified(item) for item in request.get("verify", [])],
                      "canonical": [canonical(schema) for schema in request.get("canonical", [])],
                      "signed": [signed(schema) for schema in request.get("sign", [])]}))
''')

WEATHER = {
    "name": "weather",
    "description": "Returns the current weather for a city.",
    "version": "1.2.0",
    "schema": {"type": "object",
               "properties": {"city": {"type": "string", "description": "City name, for example München",
                                       "maxLength": 100},
                              "units": {"type": "string", "enum": ["metric", "imperial"], "default": "metric"}},
               "required": ["city"]},
    "provider": {"name": "Acme Weather", "public_key_url": "https://acme.example/.well-known/schemapin.json"},
}
# Each is sent to schemapin as JSON and parsed there, as an agent would receive it.
TRICKY = [
    {"z": {"b": 2, "a": {"d": [3, {"y": 1, "x": 2}, []], "c": None}}, "a": True, "m": False, "e": {}},
    {"description": "Ünïcödé — 天気 🌦️, عربى, zero\u200bwidth, line\u2028separator, combining e\u0301",
     "escapes": "tab\t newline\n quote\" backslash\\ nul\u0000 del\u007f bell\u0007 </script>",
     "😀": "astral key", "name": "w"},
    {"int": 0, "negative": -17, "big": 12345678901234567890123, "float": 1.5, "whole": 1.0, "huge": 1e300,
     "tiny": 1e-7, "negative_zero": -0.0, "tenth": 0.1, "sum": 0.1 + 0.2, "past_double": 9007199254740993},
    {"b": 1, "B": 2, "a": 3, "_": 4, "10": 5, "9": 6, "é": 7, "e": 8, "\uffff": 9, "😀": 10, "": 11, "aa": 12},
    WEATHER,
]
KEY_ORDER = ('{"":11,"10":5,"9":6,"B":2,"_":4,"a":3,"aa":12,"b":1,"e":8,"é":7,"\uffff":9,"😀":10}').encode()


@pytest.fixture(scope="module")
def schemapin_python(request) -> Path:
    """The interpreter of a virtual environment with the schemapin release installed."""
    return package_python(request.config, SCHEMAPIN)


@pytest.fixture
def ask(schemapin_python):
    """What schemapin says about a request: {verify: [...], canonical: [...], sign: [...]}."""
    def run(request: dict) -> dict:
        env = {**os.environ}
        env.pop("PYTHONPATH", None)
        done = subprocess.run([str(schemapin_python), "-c", CHECK], input=json.dumps(request), env=env,
                              capture_output=True, text=True, timeout=120, cwd="/")
        assert done.returncode == 0, done.stdout + done.stderr
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        assert answer["version"] == "1.3.0" and answer["module"].startswith(str(schemapin_python.parents[1]))
        return answer

    return run


@pytest.fixture
def keys(tmp_path):
    return copy_keys(tmp_path / "signing")


def as_received(value):
    """The value as JSON text turns it into: what any verifier other than the signer works on."""
    return json.loads(json.dumps(value))


def item(schema, signature, public_key_pem) -> dict:
    return {"schema": schema, "signature": signature, "public_key_pem": public_key_pem}


VALID = {"low": True, "flow": True, "error": None}
REJECTED = {"low": False, "flow": False, "error": "signature_invalid"}


def tampered(schema: dict) -> list[dict]:
    """Changes a verifier must notice: text, an added key, a number's type, a nested value."""
    described = copy.deepcopy(schema)
    described["description"] += " "
    added = copy.deepcopy(schema)
    added["schema"]["properties"]["country"] = {"type": "string"}
    retyped = copy.deepcopy(schema)
    retyped["schema"]["properties"]["city"]["maxLength"] = 100.0
    nested = copy.deepcopy(schema)
    nested["schema"]["properties"]["units"]["enum"].reverse()
    return [described, added, retyped, nested]


def test_schemapin_verifies_lockgate_signatures_and_rejects_tampering(keys, tmp_path, ask):
    pin = signing.schemapin_signer(keys)
    other = signing.schemapin_signer(tmp_path / "other")
    signature = pin.sign(WEATHER)
    reordered = dict(reversed(list(WEATHER.items())))  # same canonical form: still verifies
    requests = [item(WEATHER, signature, pin.public_key_pem()), item(reordered, signature, pin.public_key_pem())]
    requests += [item(schema, signature, pin.public_key_pem()) for schema in tampered(WEATHER)]
    requests.append(item(WEATHER, signature, other.public_key_pem()))  # another key's signature
    requests.append(item(WEATHER, other.sign(WEATHER), pin.public_key_pem()))
    requests += [item(schema, pin.sign(schema), pin.public_key_pem()) for schema in TRICKY]
    answer = ask({"verify": [{**entry, "schema": as_received(entry["schema"])} for entry in requests]})
    assert answer["verified"][:2] == [VALID, VALID]
    assert answer["verified"][2:8] == [REJECTED] * 6
    assert answer["verified"][8:] == [VALID] * len(TRICKY)


def test_canonical_forms_are_byte_for_byte_schemapins(ask):
    answer = ask({"canonical": TRICKY})
    ours = [signing.canonical_json(as_received(schema)) for schema in TRICKY]
    theirs = [base64.b64decode(text) for text in answer["canonical"]]
    for schema, mine, schemapins in zip(TRICKY, ours, theirs, strict=True):
        assert mine == schemapins, schema
    assert ours[3] == KEY_ORDER
    assert b'"negative_zero":-0.0' in ours[2] and b'"big":12345678901234567890123' in ours[2]
    assert "天気 🌦️".encode() in ours[1] and b"\\u0000" in ours[1] and b" " not in ours[0]


def test_lockgate_verifies_schemapins_own_signatures(ask):
    schemas = [WEATHER, *TRICKY[:4]]
    answer = ask({"sign": schemas})
    for schema, made in zip(schemas, answer["signed"], strict=True):
        signing.verify_schemapin(schema, made["signature"], made["public_key_pem"])
    first = answer["signed"][0]
    for schema in tampered(WEATHER):
        with pytest.raises(VerificationError):
            signing.verify_schemapin(schema, first["signature"], first["public_key_pem"])
    with pytest.raises(VerificationError):
        signing.verify_schemapin(WEATHER, first["signature"], answer["signed"][1]["public_key_pem"])
    with pytest.raises(VerificationError):
        signing.verify_schemapin(WEATHER, "not base64!", first["public_key_pem"])


# ---- what a review signed through the API hands an agent ----------------------------------


@pytest.fixture
def app(app_factory, keys):
    config = {section: dict(values) for section, values in RELAXED.items()}
    config["review"].update(key_dir=str(keys), signing="schemapin")
    return app_factory(config)


def signed_review(client, headers, body) -> tuple[dict, dict, bytes]:
    """A submission's signing answer, its package's schemapin.json and the package, once it is signed."""
    created = client.post(f"{BASE}/sessions", json=body, headers=headers)
    assert created.status_code == 201, created.get_json()
    review_id = created.get_json()["review_id"]
    wait_until(lambda: client.get(f"{BASE}/sessions/{review_id}", headers=headers).get_json()["status"] == "signed",
               timeout=60, message=f"review {review_id} to be signed")
    answer = client.get(f"{BASE}/signing/{review_id}", headers=headers).get_json()
    data = client.get(f"{BASE}/signing/{review_id}/download", headers=headers).data
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        pinned = json.loads(tar.extractfile(package.SCHEMAPIN).read())
    return answer, pinned, data


def test_signed_review_carries_a_signature_schemapin_accepts(app, client, auth, keys, ask):
    with running_pool(app):
        schema_answer, schema_pin, schema_package = signed_review(
            client, auth("write"), {"tool": WEATHER, "submitted_by": "dev@example.com"})
        source_answer, source_pin, source_package = signed_review(client, auth("write"), submission())
    roots = signing.trusted_roots(keys)
    for answer, pinned, data in ((schema_answer, schema_pin, schema_package),
                                 (source_answer, source_pin, source_package)):
        assert set(package.verify(data, roots)["files"]) >= {package.SCHEMAPIN}  # covered by the RSA manifest
        info = answer["signature_info"]["schemapin"]
        assert info == {key: pinned[key] for key in ("algorithm", "signature", "public_key_pem")}
        assert info["algorithm"] == signing.SCHEMAPIN_ALGORITHM
        assert info["public_key_pem"] == signing.schemapin_signer(keys).public_key_pem()
        signing.verify_schemapin(pinned["schema"], info["signature"], info["public_key_pem"])
    assert schema_pin["schema"] == WEATHER  # the tool as its provider wrote it, so the provider's copy verifies
    assert source_pin["schema"]["name"] == "adder" and source_pin["schema"]["version"] == "1.0.0"
    requests = [item(pinned["schema"], pinned["signature"], pinned["public_key_pem"])
                for pinned in (schema_pin, source_pin)]
    requests.append(item(WEATHER, schema_answer["signature_info"]["schemapin"]["signature"],
                         schema_answer["signature_info"]["schemapin"]["public_key_pem"]))
    requests += [item(schema, schema_pin["signature"], schema_pin["public_key_pem"]) for schema in tampered(WEATHER)]
    answer = ask({"verify": requests})
    assert answer["verified"] == [VALID, VALID, VALID] + [REJECTED] * 4
