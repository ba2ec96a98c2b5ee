"""Access tokens: only EdDSA tokens we signed, for us, in their lifetime, are accepted."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medcloud.platform.clock import FrozenClock
from medcloud.platform.errors import Unauthorized
from medcloud.platform.security import (
    Role,
    TokenKeys,
    TokenService,
    UserPrincipal,
    generate_key_file,
)

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
ALICE = UserPrincipal("user-alice", "org-1", Role.CLINICIAN)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def keys() -> TokenKeys:
    return TokenKeys(Ed25519PrivateKey.generate())


@pytest.fixture
def tokens(keys: TokenKeys, clock: FrozenClock) -> TokenService:
    return TokenService(
        keys,
        issuer="medcloud",
        audience="medcloud-api",
        lifetime=dt.timedelta(minutes=15),
        clock=clock,
    )


def claims(**overrides: Any) -> dict[str, Any]:
    base = {
        "iss": "medcloud",
        "aud": "medcloud-api",
        "sub": "user-alice",
        "org": "org-1",
        "role": "clinician",
        "typ": "access",
        "iat": int(NOW.timestamp()),
        "nbf": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 900,
    }
    return base | overrides


def private(keys: TokenKeys) -> Ed25519PrivateKey:
    assert keys.private_key is not None
    return keys.private_key


def sign(keys: TokenKeys, payload: dict[str, Any]) -> str:
    return jwt.encode(payload, private(keys), algorithm="EdDSA", headers={"kid": keys.kid})


def test_a_token_we_issued_verifies(tokens: TokenService) -> None:
    assert tokens.verify(tokens.issue(ALICE)) == ALICE


def test_an_expired_token_is_refused(tokens: TokenService, clock: FrozenClock) -> None:
    token = tokens.issue(ALICE)
    clock.advance(minutes=16)
    with pytest.raises(Unauthorized):
        tokens.verify(token)


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": "someone-else"},
        {"iss": "evil"},
        {
            "nbf": int(NOW.timestamp()) + 3600,
            "iat": int(NOW.timestamp()) + 3600,
            "exp": int(NOW.timestamp()) + 7200,
        },
        {"typ": "refresh"},
        {"role": "superuser"},
    ],
)
def test_tokens_with_wrong_claims_are_refused(
    tokens: TokenService, keys: TokenKeys, overrides: dict[str, Any]
) -> None:
    with pytest.raises(Unauthorized):
        tokens.verify(sign(keys, claims(**overrides)))


def test_alg_none_is_refused(tokens: TokenService, keys: TokenKeys) -> None:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    token = f"{b64({'alg': 'none', 'kid': keys.kid})}.{b64(claims())}."
    with pytest.raises(Unauthorized):
        tokens.verify(token)


def test_hs256_signed_with_the_public_key_is_refused(tokens: TokenService, keys: TokenKeys) -> None:
    public_pem = (
        private(keys)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    import hashlib
    import hmac

    header = {"alg": "HS256", "typ": "JWT", "kid": keys.kid}

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(Unauthorized):
        tokens.verify(f"{signing_input}.{b64(signature)}")


def test_a_token_signed_by_another_key_is_refused(tokens: TokenService, keys: TokenKeys) -> None:
    stranger = TokenKeys(Ed25519PrivateKey.generate())
    forged = jwt.encode(claims(), private(stranger), algorithm="EdDSA", headers={"kid": keys.kid})
    with pytest.raises(Unauthorized):
        tokens.verify(forged)


def test_a_tampered_payload_is_refused(tokens: TokenService) -> None:
    header, _, signature = tokens.issue(ALICE).split(".")
    admin = base64.urlsafe_b64encode(json.dumps(claims(role="admin")).encode()).rstrip(b"=")
    with pytest.raises(Unauthorized):
        tokens.verify(f"{header}.{admin.decode()}.{signature}")


def test_rotating_the_signing_key_logs_nobody_out(tmp_path: Path, clock: FrozenClock) -> None:
    def service(keys: TokenKeys) -> TokenService:
        return TokenService(
            keys,
            issuer="medcloud",
            audience="medcloud-api",
            lifetime=dt.timedelta(minutes=15),
            clock=clock,
        )

    before = service(TokenKeys.from_directory(tmp_path))
    old_token = before.issue(ALICE)
    generate_key_file(tmp_path)  # the operator adds a key and restarts
    after = service(TokenKeys.from_directory(tmp_path))
    assert after.verify(old_token) == ALICE
    new_token = after.issue(ALICE)
    assert (
        jwt.get_unverified_header(new_token)["kid"] != jwt.get_unverified_header(old_token)["kid"]
    )
    assert after.verify(new_token) == ALICE
    assert len(after.keys.jwks()["keys"]) == 2


def test_a_service_holding_only_the_jwks_verifies_but_cannot_sign(
    tokens: TokenService, keys: TokenKeys, clock: FrozenClock
) -> None:
    verifier = TokenService(
        TokenKeys.from_jwks(keys.jwks()),
        issuer="medcloud",
        audience="medcloud-api",
        lifetime=dt.timedelta(minutes=15),
        clock=clock,
    )
    assert verifier.verify(tokens.issue(ALICE)) == ALICE
    with pytest.raises(RuntimeError):
        verifier.issue(ALICE)


def test_retired_public_keys_from_configuration_still_verify(clock: FrozenClock) -> None:
    old = Ed25519PrivateKey.generate()
    old_service = TokenService(
        TokenKeys(old),
        issuer="medcloud",
        audience="medcloud-api",
        lifetime=dt.timedelta(minutes=15),
        clock=clock,
    )
    token = old_service.issue(ALICE)
    new_pem = (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    old_public = (
        old.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    rotated = TokenService(
        TokenKeys.from_pem(new_pem, retired_pems=[old_public]),
        issuer="medcloud",
        audience="medcloud-api",
        lifetime=dt.timedelta(minutes=15),
        clock=clock,
    )
    assert rotated.verify(token) == ALICE


def test_a_token_verified_once_is_still_refused_once_it_expires(
    tokens: TokenService, clock: FrozenClock
) -> None:
    token = tokens.issue(ALICE)
    assert tokens.verify(token) == ALICE  # its signature is now remembered
    clock.advance(minutes=16)
    with pytest.raises(Unauthorized):
        tokens.verify(token)


def test_a_token_verified_once_is_refused_once_its_key_is_withdrawn(
    tokens: TokenService, keys: TokenKeys
) -> None:
    token = tokens.issue(ALICE)
    assert tokens.verify(token) == ALICE
    tokens.replace_keys(TokenKeys.from_jwks(TokenKeys(Ed25519PrivateKey.generate()).jwks()))
    with pytest.raises(Unauthorized):
        tokens.verify(token)
