"""Webhook signatures, acknowledge-link tokens and Twilio callback signatures, without I/O."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medcloud.notifications.signing import (
    MAX_LINK_TOKEN_CHARS,
    WEBHOOK_ID,
    WEBHOOK_SIGNATURE,
    WEBHOOK_TIMESTAMP,
    LinkClaims,
    open_link,
    sign_link,
    sign_webhook,
    verify_twilio_signature,
    verify_webhook,
    webhook_headers,
)

SECRET = "whsec-stmary-ward-3b"
BODY = b'{"type":"alert.raised","alert":{"priority":"high"},"link":"https://m.example/a/1"}'
T = 1_714_555_800
LINK_SECRET = b"link-secret-32-bytes-long-enough"


def test_a_signed_webhook_verifies() -> None:
    signature = sign_webhook(SECRET, BODY, T)
    assert signature.startswith("v1=") and len(signature) == 3 + 64
    assert verify_webhook(SECRET, BODY, str(T), signature, now=T)


def test_the_headers_carry_the_key_the_timestamp_and_the_signature() -> None:
    headers = webhook_headers(SECRET, "alert-1:0:webhook", BODY, T)
    assert headers == {
        WEBHOOK_ID: "alert-1:0:webhook",
        WEBHOOK_TIMESTAMP: str(T),
        WEBHOOK_SIGNATURE: sign_webhook(SECRET, BODY, T),
    }


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{T}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign_webhook(SECRET, BODY, T) == f"v1={expected}"


def test_a_webhook_signed_with_another_secret_fails() -> None:
    signature = sign_webhook("mallory-secret", BODY, T)
    assert not verify_webhook(SECRET, BODY, str(T), signature, now=T)


def test_an_altered_body_fails() -> None:
    signature = sign_webhook(SECRET, BODY, T)
    assert not verify_webhook(SECRET, BODY.replace(b"high", b"low!"), str(T), signature, now=T)


def test_an_altered_timestamp_fails() -> None:
    signature = sign_webhook(SECRET, BODY, T)
    assert not verify_webhook(SECRET, BODY, str(T + 1), signature, now=T)


def test_a_timestamp_inside_the_window_passes_either_way() -> None:
    signature = sign_webhook(SECRET, BODY, T)
    assert verify_webhook(SECRET, BODY, str(T), signature, now=T + 300)
    assert verify_webhook(SECRET, BODY, str(T), signature, now=T - 300)


def test_a_timestamp_outside_the_window_fails_either_way() -> None:
    signature = sign_webhook(SECRET, BODY, T)
    assert not verify_webhook(SECRET, BODY, str(T), signature, now=T + 301)  # a replay
    assert not verify_webhook(SECRET, BODY, str(T), signature, now=T - 301)  # from the future
    assert not verify_webhook(SECRET, BODY, str(T), signature, now=T + 61, tolerance_seconds=60)


def test_any_of_several_signatures_is_enough_during_a_rotation() -> None:
    old = sign_webhook("old-secret", BODY, T)
    new = sign_webhook(SECRET, BODY, T)
    assert verify_webhook(SECRET, BODY, str(T), f"{old} {new}", now=T)
    assert verify_webhook(SECRET, BODY, str(T), f"{new} {old}", now=T)
    assert verify_webhook("old-secret", BODY, str(T), f"{new} {old}", now=T)
    assert not verify_webhook("third-secret", BODY, str(T), f"{new} {old}", now=T)


def test_malformed_headers_fail_without_raising() -> None:
    good = sign_webhook(SECRET, BODY, T)
    for timestamp, signature in [
        ("", good),
        ("abc", good),
        (f" {T}", good),
        (f"+{T}", good),
        (f"{T}.5", good),
        ("١٧١٤٥٥٥٨٠٠", good),  # Arabic-Indic digits: int() accepts them, we do not
        ("9" * 40, good),
        (str(T), ""),
        (str(T), good.removeprefix("v1=")),
        (str(T), "v2=" + good.removeprefix("v1=")),
        (str(T), good.upper()),
        (str(T), good[:-1]),
        (str(T), good + "0"),
        (str(T), "v1=" + "é" * 64),
        (str(T), " ".join([good] * 9)),  # more values than any rotation needs
    ]:
        assert not verify_webhook(SECRET, BODY, timestamp, signature, now=T), (timestamp, signature)


def test_an_empty_secret_neither_signs_nor_verifies() -> None:
    with pytest.raises(ValueError, match="empty"):
        sign_webhook("", BODY, T)
    assert not verify_webhook("", BODY, str(T), sign_webhook(SECRET, BODY, T), now=T)


@given(secret=st.text(min_size=1, max_size=64), body=st.binary(max_size=2048))
def test_any_signed_body_verifies(secret: str, body: bytes) -> None:
    assert verify_webhook(secret, body, str(T), sign_webhook(secret, body, T), now=T)


@given(
    secret=st.text(min_size=1, max_size=64),
    body=st.binary(min_size=1, max_size=512),
    position=st.integers(min_value=0),
    delta=st.integers(min_value=1, max_value=255),
)
def test_any_single_byte_change_of_the_body_fails(
    secret: str, body: bytes, position: int, delta: int
) -> None:
    signature = sign_webhook(secret, body, T)
    changed = bytearray(body)
    changed[position % len(body)] = (changed[position % len(body)] + delta) % 256
    assert not verify_webhook(secret, bytes(changed), str(T), signature, now=T)


def link(*, alert_id: str = "alert-1") -> str:
    return sign_link(
        LINK_SECRET, alert_id=alert_id, user_id="bob-clinician", expires_at=T + 3600, nonce="n-0001"
    )


def test_a_link_token_opens_to_its_claims() -> None:
    token = link()
    assert len(token) < 200
    assert all(c.isalnum() or c in "-_." for c in token)  # safe in a URL as it is
    assert open_link(LINK_SECRET, token, now=T) == LinkClaims(
        "alert-1", "bob-clinician", T + 3600, "n-0001"
    )


def test_a_link_token_expires() -> None:
    token = link()
    assert open_link(LINK_SECRET, token, now=T + 3599) is not None
    assert open_link(LINK_SECRET, token, now=T + 3600) is None


def test_a_link_token_with_another_secret_does_not_open() -> None:
    assert open_link(b"another-secret", link(), now=T) is None


def test_a_link_token_with_a_changed_payload_does_not_open() -> None:
    payload, mac = link().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["u"] = "mallory-other-org"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert open_link(LINK_SECRET, f"{forged}.{mac}", now=T) is None


def test_a_link_token_with_a_changed_signature_does_not_open() -> None:
    payload, mac = link().split(".")
    for changed in (mac[:-1] + ("A" if mac[-1] != "A" else "B"), mac[:-2], mac + "AA", ""):
        assert open_link(LINK_SECRET, f"{payload}.{changed}", now=T) is None


def test_a_link_token_signed_for_one_alert_does_not_open_for_another() -> None:
    one, two = link(alert_id="alert-1"), link(alert_id="alert-2")
    spliced = f"{two.split('.')[0]}.{one.split('.')[1]}"
    assert open_link(LINK_SECRET, spliced, now=T) is None


def test_an_overlong_link_token_is_refused_unread() -> None:
    token = link()
    padded = token + "A" * (MAX_LINK_TOKEN_CHARS + 1 - len(token))
    assert open_link(LINK_SECRET, padded, now=T) is None


def test_garbage_link_tokens_do_not_open() -> None:
    for garbage in ["", ".", "..", "abc", "abc.def", "a.b.c", "!!!.???", "é.é", "=.=", " . "]:
        assert open_link(LINK_SECRET, garbage, now=T) is None, garbage


@given(st.text(max_size=300))
def test_no_text_opens_as_a_link_or_raises(garbage: str) -> None:
    assert open_link(LINK_SECRET, garbage, now=T) is None


# Twilio's documented example (twilio.com/docs/usage/security#validating-requests, also the
# fixture of twilio-python's RequestValidator tests).
TWILIO_TOKEN = "12345"
TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
TWILIO_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_twilios_documented_example_verifies() -> None:
    assert verify_twilio_signature(TWILIO_TOKEN, TWILIO_URL, TWILIO_PARAMS, TWILIO_SIGNATURE)


def test_a_tampered_twilio_callback_fails() -> None:
    tampered = {**TWILIO_PARAMS, "Digits": "1235"}
    assert not verify_twilio_signature(TWILIO_TOKEN, TWILIO_URL, tampered, TWILIO_SIGNATURE)
    assert not verify_twilio_signature(
        TWILIO_TOKEN, TWILIO_URL + "&baz=3", TWILIO_PARAMS, TWILIO_SIGNATURE
    )
    assert not verify_twilio_signature("54321", TWILIO_URL, TWILIO_PARAMS, TWILIO_SIGNATURE)
    for signature in ("", "é", TWILIO_SIGNATURE[:-1]):
        assert not verify_twilio_signature(TWILIO_TOKEN, TWILIO_URL, TWILIO_PARAMS, signature)
