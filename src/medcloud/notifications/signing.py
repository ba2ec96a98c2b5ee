"""Signatures for what notifications send and receive: webhooks, acknowledge links, SMS callbacks.

Every check is an HMAC compared with `hmac.compare_digest`, and every parser refuses malformed
input by returning False or None rather than raising, so a caller can answer 401 or 400 without
telling an attacker which part was wrong. The webhook scheme is documented for receivers in
docs/webhooks.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

WEBHOOK_ID = "Medcloud-Webhook-Id"
WEBHOOK_TIMESTAMP = "Medcloud-Webhook-Timestamp"
WEBHOOK_SIGNATURE = "Medcloud-Webhook-Signature"
WEBHOOK_TOLERANCE_SECONDS = 300
"""How far a webhook's timestamp may be from the receiver's clock, either way."""
MAX_LINK_TOKEN_CHARS = 1000
"""Longest acknowledge-link token `open_link` decodes; anything longer is refused unread."""

_TIMESTAMP = re.compile(r"[0-9]{1,15}")
# One `v1=` value per signing secret in use; a handful covers any rotation, and the bound keeps
# the work a forged header can cause small.
_MAX_SIGNATURES = 8
_V1 = re.compile(r"v1=([0-9a-f]{64})")
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
# Keeps a link's MAC apart from any other HMAC made with the same secret.
_LINK_CONTEXT = b"medcloud.ack-link.v1."


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    """Return the `Medcloud-Webhook-Signature` header value for `body` sent at `timestamp`."""
    if not secret:
        raise ValueError("a webhook signing secret must not be empty")
    signed = f"{timestamp}.".encode() + body
    return "v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def webhook_headers(secret: str, key: str, body: bytes, timestamp: int) -> dict[str, str]:
    """Return the three signature headers of a webhook delivery; `key` is its idempotency key."""
    return {
        WEBHOOK_ID: key,
        WEBHOOK_TIMESTAMP: str(timestamp),
        WEBHOOK_SIGNATURE: sign_webhook(secret, body, timestamp),
    }


def verify_webhook(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    now: float,
    tolerance_seconds: int = WEBHOOK_TOLERANCE_SECONDS,
) -> bool:
    """Tell whether a webhook is authentic and fresh.

    `signature` may hold several space-separated `v1=` values (during a secret rotation); one
    match is enough. False for an empty secret, a malformed header, or a timestamp more than
    `tolerance_seconds` from `now` in either direction (a replay, or a clock far off).
    """
    if not secret or not _TIMESTAMP.fullmatch(timestamp):
        return False
    if abs(now - int(timestamp)) > tolerance_seconds:
        return False
    values = signature.split()
    if not values or len(values) > _MAX_SIGNATURES:
        return False
    expected = sign_webhook(secret, body, int(timestamp)).removeprefix("v1=")
    found = False
    for value in values:
        match = _V1.fullmatch(value)
        # Compare with every value rather than stopping at the first match, so the time taken
        # does not tell which one matched.
        if match and hmac.compare_digest(match.group(1), expected):
            found = True
    return found


@dataclass(frozen=True)
class LinkClaims:
    """What a signed acknowledge link grants: `user_id` may acknowledge `alert_id` until
    `expires_at` (unix seconds); `nonce` lets the caller accept each link once."""

    alert_id: str
    user_id: str
    expires_at: int
    nonce: str


def sign_link(secret: bytes, *, alert_id: str, user_id: str, expires_at: int, nonce: str) -> str:
    """Return a URL-safe token for an acknowledge link: base64url JSON claims, a dot, and
    base64url HMAC-SHA256 over the encoded claims."""
    if not secret:
        raise ValueError("a link signing secret must not be empty")
    claims = {"a": alert_id, "u": user_id, "e": expires_at, "n": nonce}
    payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    token = f"{payload}.{_b64encode(_link_mac(secret, payload))}"
    if len(token) > MAX_LINK_TOKEN_CHARS:
        raise ValueError("the link's claims are too long for a token")
    return token


def open_link(secret: bytes, token: str, *, now: float) -> LinkClaims | None:
    """Return the claims of an authentic, unexpired link token, else None."""
    if not secret or len(token) > MAX_LINK_TOKEN_CHARS:
        return None
    payload, dot, mac = token.partition(".")
    if not dot or not _B64URL.fullmatch(payload) or not _B64URL.fullmatch(mac):
        return None
    given = _b64decode(mac)
    if given is None or not hmac.compare_digest(given, _link_mac(secret, payload)):
        return None
    # Only claims we signed ourselves get this far, so a parse failure is a bug or an old
    # format; it still must not raise.
    raw = _b64decode(payload)
    try:
        claims = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    if not isinstance(claims, dict) or set(claims) != {"a", "u", "e", "n"}:
        return None
    alert_id, user_id, expires_at, nonce = claims["a"], claims["u"], claims["e"], claims["n"]
    if not (isinstance(alert_id, str) and isinstance(user_id, str) and isinstance(nonce, str)):
        return None
    if isinstance(expires_at, bool) or not isinstance(expires_at, int) or now >= expires_at:
        return None
    return LinkClaims(alert_id=alert_id, user_id=user_id, expires_at=expires_at, nonce=nonce)


def verify_twilio_signature(
    auth_token: str, url: str, params: Mapping[str, str], signature: str
) -> bool:
    """Tell whether `signature` (the `X-Twilio-Signature` header) authenticates a callback.

    Twilio's scheme: base64 HMAC-SHA1, keyed with the auth token, over the full URL it called
    followed by each POST parameter's name and value, sorted by name. `url` must be exactly the
    URL given to the provider as StatusCallback, query string included.
    """
    if not auth_token or not signature:
        return False
    data = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    expected = base64.b64encode(digest)
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


def _link_mac(secret: bytes, payload: str) -> bytes:
    return hmac.new(secret, _LINK_CONTEXT + payload.encode("ascii"), hashlib.sha256).digest()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Decode unpadded base64url; None unless `text` is the canonical encoding of its bytes."""
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    # Refuse the non-canonical spellings (spare bits set in the last character) so one token
    # has exactly one string form.
    return data if _b64encode(data) == text else None
