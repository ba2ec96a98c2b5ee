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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class DevicePrincipal:
    """A device, authenticated by its own token."""

    device_id: str
    organisation_id: str
    patient_id: str | None


Principal = UserPrincipal | DevicePrincipal


class TokenKeys:
    """The signing key and the public keys that verify tokens, by key id."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self.private_key = private_key
        public = private_key.public_key()
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(raw).digest()[:12]).decode()
        self.public_keys: dict[str, Ed25519PublicKey] = {self.kid: public}

    @classmethod
    def from_pem(cls, pem: str) -> TokenKeys:
        """Load an Ed25519 private key in PEM."""
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the JWT signing key must be an Ed25519 key")
        return cls(key)

    @classmethod
    def from_file(cls, path: Path) -> TokenKeys:
        """Load the key file, generating it (mode 0600) on the first start of an embedded setup."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(pem)
        return cls.from_pem(path.read_text())


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

    @property
    def lifetime(self) -> dt.timedelta:
        """How long an access token lives."""
        return self._lifetime

    def issue(self, principal: UserPrincipal) -> str:
        """Sign an access token for `principal`."""
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
        }
        return jwt.encode(
            claims, self._keys.private_key, algorithm=ALGORITHM, headers={"kid": self._keys.kid}
        )

    def verify(self, token: str) -> UserPrincipal:
        """Return the principal of a valid access token; raise Unauthorized otherwise."""
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.public_keys.get(str(header.get("kid")))
            if key is None:
                raise Unauthorized("unknown signing key")
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                # Times are checked below against the injected clock, not PyJWT's wall clock.
                options={
                    "require": ["exp", "iat", "nbf", "sub", "iss", "aud"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
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
            )
        except (jwt.PyJWTError, KeyError, ValueError, TypeError) as exc:
            raise Unauthorized("invalid access token") from exc


_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


async def hash_password(password: str) -> str:
    """Hash with argon2id, off the event loop."""
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str, password: str) -> bool:
    """Check a password against its hash, off the event loop."""
    try:
        return await asyncio.to_thread(_hasher.verify, password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def new_device_token() -> str:
    """Return a fresh device token, shown to its owner once."""
    return DEVICE_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_device_token(token: str) -> str:
    """Return the stored form of a device token."""
    return hashlib.sha256(token.encode()).hexdigest()
