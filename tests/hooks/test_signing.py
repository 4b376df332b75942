import base64

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app.hooks import signing


def test_generated_secrets_are_standard_webhooks_secrets():
    secret = signing.generate_secret()
    assert secret.startswith("whsec_")
    assert len(signing.decode_secret(secret)) == signing.KEY_BYTES
    assert signing.generate_secret() != secret


def test_signature_verifies_with_the_reference_library():
    secret = signing.generate_secret()
    body = '{"type":"ping","timestamp":"2026-01-01T00:00:00.000Z","data":{"x":"é"}}'
    import time

    now = int(time.time())
    headers = signing.headers(secret, "msg_1", now, body)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(now)
    assert Webhook(secret).verify(body, headers)["data"] == {"x": "é"}
    # Another key, another id or a changed body must not verify.
    for bad_secret, bad_id, bad_body in ((signing.generate_secret(), "msg_1", body),
                                         (secret, "msg_2", body), (secret, "msg_1", body + " ")):
        forged = dict(headers, **{"webhook-id": bad_id,
                                  "webhook-signature": signing.signature(bad_secret, "msg_1", now, body)})
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(bad_body, forged)


def test_signature_matches_the_specification_example():
    # From the Standard Webhooks specification's reference test vector.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = '{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert signing.signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


@pytest.mark.parametrize("secret, reason", [
    ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with whsec_"),
    ("whsec_not base64!", "base64"),
    ("whsec_" + base64.b64encode(b"short").decode(), "24 to 64 bytes"),
    ("whsec_" + base64.b64encode(b"x" * 65).decode(), "24 to 64 bytes"),
])
def test_bad_secrets_are_rejected_with_a_reason(secret, reason):
    with pytest.raises(ValueError, match=reason):
        signing.decode_secret(secret)


def test_unpadded_secrets_are_accepted():
    key = b"k" * 32
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    assert signing.decode_secret(unpadded) == key
