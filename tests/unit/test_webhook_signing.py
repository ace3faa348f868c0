"""Standard Webhooks signatures and the URLs a site admin may give."""

from __future__ import annotations

import pytest

from server.http import ApiError
from server.webhooks.api import checked_webhook_url
from server.webhooks.signing import endpoint_secret, signature, signed_headers, verify

# The test vector published with the Standard Webhooks reference libraries.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_reference_vector() -> None:
    assert signature(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY) == VECTOR_SIGNATURE


def test_verify_refuses_tampering_old_messages_and_missing_headers() -> None:
    headers = signed_headers(VECTOR_SECRET, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY)
    assert verify(VECTOR_SECRET, headers, VECTOR_BODY, VECTOR_TIMESTAMP + 10)
    assert not verify(VECTOR_SECRET, headers, VECTOR_BODY + b"x", VECTOR_TIMESTAMP)
    assert not verify(VECTOR_SECRET, headers, VECTOR_BODY, VECTOR_TIMESTAMP + 3600)
    assert not verify(VECTOR_SECRET, {**headers, "webhook-id": "msg_other"}, VECTOR_BODY, 0)
    assert not verify(VECTOR_SECRET, {}, VECTOR_BODY, VECTOR_TIMESTAMP)


def test_endpoint_secret_depends_on_server_key_and_salt() -> None:
    one = endpoint_secret("k" * 40, "salt-aaaaaaaaaaaaaaaa")
    assert one.startswith("whsec_")
    assert one == endpoint_secret("k" * 40, "salt-aaaaaaaaaaaaaaaa")
    assert one != endpoint_secret("k" * 40, "salt-bbbbbbbbbbbbbbbb")
    assert one != endpoint_secret("j" * 40, "salt-aaaaaaaaaaaaaaaa")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://10.1.2.3/x",
        "http://192.168.0.7/x",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost/x",
        "http://[::1]/x",
    ],
)
def test_internal_addresses_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(ApiError) as refused:
        checked_webhook_url(url, allow_private=False)
    assert refused.value.status_code == 400
    assert checked_webhook_url(url, allow_private=True) == url


def test_public_url_is_accepted() -> None:
    assert checked_webhook_url("https://hooks.example.org/in", allow_private=False)
