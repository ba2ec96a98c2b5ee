"""Access tokens of a user who was disabled or given another role stop working at once, not
when they expire.

Access tokens are checked by signature alone, in every process, for up to
`access_token_minutes`. Disabling a user ends their sessions, so no new token is issued; the
tokens already out are refused by a mark the change leaves in the shared cache (Redis when
processes are split): every token of that user signed before the mark is refused. The mark
outlives the longest-lived token, then goes.

A process that cannot reach the cache answers 503 rather than let tokens through unchecked,
which would let a disabled user back in (the rate limiter, by contrast, lets requests through
uncounted). The embedded deployment's in-process cache is an LRU of 100,000 entries: a mark is
lost only if that many other entries are used before its user tries again, and each try keeps
it.
"""

from __future__ import annotations

import datetime as dt

from medcloud.platform.cache import Cache
from medcloud.platform.errors import Unauthorized
from medcloud.platform.security import CLOCK_LEEWAY_SECONDS, UserPrincipal


def _key(user_id: str) -> str:
    return f"tokens-revoked:{user_id}"


async def revoke_tokens(
    cache: Cache, user_id: str, at: dt.datetime, *, token_lifetime: dt.timedelta
) -> None:
    """Refuse from now on every access token of `user_id` signed before `at`."""
    mark = str(int(at.timestamp() * 1000)).encode()
    ttl = token_lifetime.total_seconds() + 2 * CLOCK_LEEWAY_SECONDS
    await cache.set(_key(user_id), mark, ttl_seconds=ttl)


async def ensure_not_revoked(cache: Cache, principal: UserPrincipal) -> None:
    """Raise Unauthorized when `principal`'s token was signed before its user's last mark."""
    mark = await cache.get(_key(principal.user_id))
    if mark is not None and principal.issued_at_ms < int(mark):
        raise Unauthorized("the access token was revoked; sign in again")
