"""Revoking a user's access tokens refuses those signed before the mark, and only those."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medcloud.platform.cache import MemoryCache
from medcloud.platform.clock import FrozenClock
from medcloud.platform.errors import Unauthorized
from medcloud.platform.revocation import ensure_not_revoked, revoke_tokens
from medcloud.platform.security import Role, TokenKeys, TokenService, UserPrincipal

NINA = UserPrincipal("nina", "st-marys", Role.NURSE)
OMAR = UserPrincipal("omar", "st-marys", Role.NURSE)
LIFETIME = dt.timedelta(minutes=15)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC))


@pytest.fixture
def tokens(clock: FrozenClock) -> TokenService:
    keys = TokenKeys(Ed25519PrivateKey.generate())
    return TokenService(keys, issuer="medcloud", audience="api", lifetime=LIFETIME, clock=clock)


async def test_tokens_signed_before_the_mark_are_refused_and_later_ones_pass(
    clock: FrozenClock, tokens: TokenService
) -> None:
    cache = MemoryCache()
    before = tokens.verify(tokens.issue(NINA))
    others = tokens.verify(tokens.issue(OMAR))
    clock.advance(seconds=0.4)  # within the same second: `iat` alone could not tell them apart
    await revoke_tokens(cache, NINA.user_id, clock.now(), token_lifetime=LIFETIME)
    with pytest.raises(Unauthorized, match="revoked"):
        await ensure_not_revoked(cache, before)
    await ensure_not_revoked(cache, others)
    clock.advance(seconds=0.001)
    await ensure_not_revoked(cache, tokens.verify(tokens.issue(NINA)))
