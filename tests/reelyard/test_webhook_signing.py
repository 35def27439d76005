"""Webhook signing: what we sign, the official ``standardwebhooks`` package verifies.

Only the reference library judges our signatures here (a receiver's point of view);
our own :func:`reelyard.webhooks.verify` is checked against what that library signs.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from models.webhooks import SECRET_BYTES, new_secret
from reelyard.webhooks import (
    SignatureInvalid,
    body_of,
    headers_for,
    secret_bytes,
    sign,
    verify,
)

MSG_ID = "msg_01JD3Q8X6R9V2M4K7T0B5N8C1W"
PAYLOAD = {
    "type": "job.succeeded",
    "timestamp": "2026-11-24T15:00:00+00:00",
    "data": {"id": "job_01JD3Q8X6R9V2M4K7T0B5N8C1W", "metadata": {"order": "A-1", "é": "ü"}},
}


def test_a_new_secret_is_whsec_and_24_random_bytes():
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_")
    assert len(secret_bytes(first)) == SECRET_BYTES
    assert first != second


def test_the_official_library_verifies_a_signed_message_and_returns_the_payload():
    secret = new_secret()
    body = body_of(PAYLOAD)
    headers = headers_for(MSG_ID, body, [secret])
    assert Webhook(secret).verify(body, headers) == PAYLOAD


def test_the_headers_carry_the_id_an_integer_timestamp_and_a_v1_signature():
    body = body_of(PAYLOAD)
    headers = headers_for(MSG_ID, body, [new_secret()], timestamp=1_790_000_000)
    assert headers["webhook-id"] == MSG_ID
    assert headers["webhook-timestamp"] == "1790000000"
    version, _, encoded = headers["webhook-signature"].partition(",")
    assert version == "v1"
    assert len(base64.b64decode(encoded)) == 32  # an HMAC-SHA256


def test_our_signature_equals_the_official_librarys():
    secret = new_secret()
    body = body_of(PAYLOAD)
    signed_at = datetime(2026, 11, 24, 15, 0, 0, tzinfo=UTC)
    theirs = Webhook(secret).sign(MSG_ID, signed_at, body.decode())
    assert sign(MSG_ID, int(signed_at.timestamp()), body, [secret]) == theirs


def test_during_a_rotation_both_the_new_and_the_previous_secret_verify():
    new, previous = new_secret(), new_secret()
    body = body_of(PAYLOAD)
    headers = headers_for(MSG_ID, body, [new, previous])
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(body, headers) == PAYLOAD
    assert Webhook(previous).verify(body, headers) == PAYLOAD
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)


def test_a_tampered_body_fails_verification():
    secret = new_secret()
    body = body_of(PAYLOAD)
    headers = headers_for(MSG_ID, body, [secret])
    tampered = body.replace(b"A-1", b"A-2")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, headers)


def test_a_tampered_timestamp_fails_verification():
    secret = new_secret()
    body = body_of(PAYLOAD)
    headers = headers_for(MSG_ID, body, [secret])
    headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) - 1)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_another_message_id_fails_verification():
    secret = new_secret()
    body = body_of(PAYLOAD)
    headers = headers_for(MSG_ID, body, [secret])
    headers["webhook-id"] = "msg_01JD3Q8X6R9V2M4K7T0B5N8C1X"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_a_signature_from_long_ago_is_refused_by_the_library():
    secret = new_secret()
    body = body_of(PAYLOAD)
    headers = headers_for(MSG_ID, body, [secret], timestamp=int(time.time()) - 3600)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_the_body_is_compact_utf8_json_type_timestamp_data_first():
    stored = {"data": PAYLOAD["data"], "timestamp": PAYLOAD["timestamp"], "type": PAYLOAD["type"]}
    body = body_of(stored)
    assert list(json.loads(body)) == ["type", "timestamp", "data"]
    assert "é".encode() in body
    assert b", " not in body


def test_verify_accepts_what_the_official_library_signs():
    secret = new_secret()
    body = body_of(PAYLOAD)
    now = int(time.time())
    signature = Webhook(secret).sign(MSG_ID, datetime.fromtimestamp(now, UTC), body.decode())
    headers = {"Webhook-Id": MSG_ID, "Webhook-Timestamp": str(now), "Webhook-Signature": signature}
    verify(secret, body, headers)


def test_verify_checks_a_saved_request_at_the_time_it_was_received():
    secret = new_secret()
    body = body_of(PAYLOAD)
    received = 1_790_000_000
    headers = headers_for(MSG_ID, body, [secret], timestamp=received)
    verify(secret, body, headers, now=received + 10)
    with pytest.raises(SignatureInvalid, match="too far"):
        verify(secret, body, headers)


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-signature": "v1,AAAA"},
        {"webhook-id": ""},
        {"webhook-timestamp": "soon"},
    ],
)
def test_verify_refuses_a_bad_signature_or_missing_headers(change):
    secret = new_secret()
    body = body_of(PAYLOAD)
    headers = {**headers_for(MSG_ID, body, [secret]), **change}
    with pytest.raises(SignatureInvalid):
        verify(secret, body, headers)


def test_verify_refuses_a_tampered_body():
    secret = new_secret()
    body = body_of(PAYLOAD)
    headers = headers_for(MSG_ID, body, [secret])
    with pytest.raises(SignatureInvalid, match="no signature"):
        verify(secret, body + b" ", headers)


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not base64!", ""])
def test_a_malformed_secret_cannot_sign(secret):
    with pytest.raises(ValueError, match="secret"):
        sign(MSG_ID, 1, b"{}", [secret])


def test_signing_needs_at_least_one_secret():
    with pytest.raises(ValueError, match="at least one"):
        sign(MSG_ID, 1, b"{}", [])
