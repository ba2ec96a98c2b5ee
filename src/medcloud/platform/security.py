"""Principals and credentials: signed access tokens, password hashes and device tokens.

Access tokens are EdDSA (Ed25519) JWTs with a key id, so a service deployed apart verifies them
with the public key alone. Device tokens are 256-bit random strings; only their SHA-256 is
stored — a slow hash adds nothing for a secret that cannot be guessed, and would cost every
reading a few milliseconds.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import os
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from medcloud.platform.clock import Clock
from medcloud.platform.errors import Unauthorized

DEVICE_TOKEN_PREFIX = "mcd_"  # noqa: S105  (a prefix, not a secret)
ALGORITHM = "EdDSA"
CLOCK_LEEWAY_SECONDS = 30  # tolerated skew between the issuing and the verifying host
ACCESS_COOKIE = "medcloud_access"
"""The dashboard's cookie holding a user's access token. API routes never read it (a cookie is
sent by the browser on its own, so it would open them to cross-site requests); the edge reads
it only to count a page against its user's rate limit."""
IN_PROCESS = "medcloud.in_process"
"""ASGI scope key set on a request the app makes to itself (the dashboard's API calls). No
header maps to a scope key, so only this process can set it: the edge trusts it not to count
a page's sub-requests, whose page it counted already."""


class Role(StrEnum):
    """What a user is in their organisation."""

    ADMIN = "admin"
    CLINICIAN = "clinician"
    NURSE = "nurse"
    TECHNICIAN = "technician"
    AUDITOR = "auditor"


@dataclass(frozen=True)
class UserPrincipal:
    """A person, authenticated by an access token."""

    user_id: str
    organisation_id: str
    role: Role
    issued_at_ms: int = field(default=0, compare=False)
    """When the access token was signed, in milliseconds: a token signed before its user was
    disabled or given another role is refused (`platform/revocation.py`)."""


@dataclass(frozen=True)
class DevicePrincipal:
    """A device, authenticated by its own token."""

    device_id: str
    organisation_id: str
    patient_id: str | None
    patient_since: dt.datetime | None = None
    """Since when `patient_id` has held (see `DeviceRef.patient_since`)."""


Principal = UserPrincipal | DevicePrincipal


class UnknownSigningKey(Unauthorized):
    """The token names a key id this process does not know (yet)."""


def key_id(public: Ed25519PublicKey) -> str:
    """Return the key id of a public key: a short digest of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:12]).decode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class TokenKeys:
    """The signing key (absent in services that only verify) and every key that verifies tokens.

    Rotation: a new key signs from now on; retired keys keep verifying until the tokens they
    signed have expired, so nobody is logged out.
    """

    def __init__(
        self,
        private_key: Ed25519PrivateKey | None,
        *,
        retired: Sequence[Ed25519PublicKey] = (),
    ) -> None:
        self.private_key = private_key
        self.public_keys: dict[str, Ed25519PublicKey] = {}
        self.kid = ""
        if private_key is not None:
            public = private_key.public_key()
            self.kid = key_id(public)
            self.public_keys[self.kid] = public
        for key in retired:
            self.public_keys.setdefault(key_id(key), key)

    @classmethod
    def from_pem(cls, pem: str, *, retired_pems: Sequence[str] = ()) -> TokenKeys:
        """Load an Ed25519 private key in PEM, and the public keys of retired ones."""
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the JWT signing key must be an Ed25519 key")
        return cls(key, retired=[_load_public(p) for p in retired_pems])

    @classmethod
    def from_directory(cls, directory: Path) -> TokenKeys:
        """Load `jwt-*.pem` from `directory`: the newest signs, all verify. Create one if none."""
        files = sorted(directory.glob("jwt-*.pem"))
        if not files:
            files = [generate_key_file(directory)]
        keys = [_load_private(path.read_text()) for path in files]
        return cls(keys[-1], retired=[key.public_key() for key in keys[:-1]])

    @classmethod
    def from_jwks(cls, jwks: dict[str, Any]) -> TokenKeys:
        """Build a verify-only key set from a JWKS document."""
        retired = []
        for jwk in jwks.get("keys", []):
            if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
                raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
                retired.append(Ed25519PublicKey.from_public_bytes(raw))
        return cls(None, retired=retired)

    def jwks(self) -> dict[str, Any]:
        """Return the public keys as a JWKS document (RFC 7517, OKP keys of RFC 8037)."""
        return {
            "keys": [
                {
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "alg": ALGORITHM,
                    "use": "sig",
                    "kid": kid,
                    "x": _b64(
                        key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                    ),
                }
                for kid, key in self.public_keys.items()
            ]
        }


async def fetch_jwks(url: str) -> TokenKeys:
    """Fetch a JWKS document and build a verify-only key set from it."""
    import httpx  # only verify-only services fetch keys

    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
        response.raise_for_status()
        return TokenKeys.from_jwks(response.json())


def generate_key_file(directory: Path) -> Path:
    """Write a new Ed25519 signing key (mode 0600) named so that it sorts after older ones."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    path = directory / f"jwt-{stamp}.pem"
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    return path


def _load_private(pem: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("JWT signing keys must be Ed25519 keys")
    return key


def _load_public(pem: str) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("JWT verification keys must be Ed25519 keys")
    return key


VERIFIED_TOKENS = 4096
"""Access tokens whose signature a process remembers having checked (see `_signed_claims`)."""


class TokenService:
    """Issue and verify access tokens."""

    def __init__(
        self, keys: TokenKeys, *, issuer: str, audience: str, lifetime: dt.timedelta, clock: Clock
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._lifetime = lifetime
        self._clock = clock
        self._verified: dict[str, dict[str, Any]] = {}

    @property
    def lifetime(self) -> dt.timedelta:
        """How long an access token lives."""
        return self._lifetime

    @property
    def keys(self) -> TokenKeys:
        """The key set in use."""
        return self._keys

    def replace_keys(self, keys: TokenKeys) -> None:
        """Swap in a refreshed key set (verify-only services re-read the JWKS)."""
        self._keys = keys
        self._verified.clear()  # a key may have been withdrawn

    def issue(self, principal: UserPrincipal) -> str:
        """Sign an access token for `principal`."""
        if self._keys.private_key is None:
            raise RuntimeError("this process only verifies tokens; it holds no signing key")
        now = self._clock.now()
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": principal.user_id,
            "org": principal.organisation_id,
            "role": principal.role.value,
            "typ": "access",
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + self._lifetime).timestamp()),
            "jti": str(uuid.uuid4()),
            # `iat` is whole seconds; a revocation within the second of a refresh needs finer.
            "iat_ms": int(now.timestamp() * 1000),
        }
        return jwt.encode(
            claims, self._keys.private_key, algorithm=ALGORITHM, headers={"kid": self._keys.kid}
        )

    def verify(self, token: str) -> UserPrincipal:
        """Return the principal of a valid access token; raise Unauthorized otherwise."""
        try:
            claims = self._verified.get(token)
            if claims is None:
                claims = self._signed_claims(token)
            now = self._clock.now().timestamp()
            if float(claims["exp"]) <= now - CLOCK_LEEWAY_SECONDS:
                raise Unauthorized("the access token has expired")
            if float(claims["nbf"]) > now + CLOCK_LEEWAY_SECONDS:
                raise Unauthorized("the access token is not valid yet")
            if claims.get("typ") != "access":
                raise Unauthorized("not an access token")
            return UserPrincipal(
                user_id=str(claims["sub"]),
                organisation_id=str(claims["org"]),
                role=Role(claims["role"]),
                issued_at_ms=int(claims.get("iat_ms", int(claims["iat"]) * 1000)),
            )
        except (jwt.PyJWTError, KeyError, ValueError, TypeError) as exc:
            raise Unauthorized("invalid access token") from exc

    def _signed_claims(self, token: str) -> dict[str, Any]:
        """Check the token's signature, issuer and audience and return its claims, remembering
        them: a client sends the same token for its lifetime, and checking the signature again
        each time is two thirds of a read's authentication. Times and revocation are checked on
        every use; only tokens that passed are remembered, so a forged one costs its check."""
        header = jwt.get_unverified_header(token)
        key = self._keys.public_keys.get(str(header.get("kid")))
        if key is None:
            raise UnknownSigningKey("unknown signing key")
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=self._audience,
            issuer=self._issuer,
            # Times are checked by `verify` against the injected clock, not PyJWT's wall clock.
            options={
                "require": ["exp", "iat", "nbf", "sub", "iss", "aud"],
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
        if len(self._verified) >= VERIFIED_TOKENS:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = claims
        return claims


_hasher = [PasswordHasher()]  # argon2id; replaced by configure_password_hashing()


def configure_password_hashing(*, time_cost: int, memory_kib: int, parallelism: int) -> None:
    """Set the argon2id cost of new hashes (existing hashes keep verifying: they carry theirs)."""
    _hasher[0] = PasswordHasher(
        time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
    )


async def hash_password(password: str) -> str:
    """Hash with argon2id, off the event loop."""
    return await asyncio.to_thread(_hasher[0].hash, password)


async def verify_password(password_hash: str, password: str) -> bool:
    """Check a password against its hash, off the event loop."""
    try:
        return await asyncio.to_thread(_hasher[0].verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_device_token() -> str:
    """Return a fresh device token, shown to its owner once."""
    return DEVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)


def device_cache_key(token_hash: str) -> str:
    """Name the cache entry under which a verified device token is remembered."""
    return f"device-token:{token_hash}"


def hash_device_token(token: str) -> str:
    """Return the stored form of a device token."""
    return hashlib.sha256(token.encode()).hexdigest()
