"""How sign-in guessing is slowed without letting anyone lock a user out.

Three limits, all keyed so that an unknown email is treated exactly like a known one:

- **Per email and source address** (cache): `failures_before_wait` failures are free; after
  that the address waits `first_wait_seconds`, doubling with each further failure up to
  `longest_wait_seconds`, before it may try that email again. Other addresses are not
  affected, and a correct sign-in from the address clears its count.
- **Per account, from every address** (the account's `failed_logins` and `locked_until`
  columns, counted atomically by `repository.reserve_login_attempt`): past
  `account_failures_before_wait` the same growing waits apply to every address the account
  has not signed in from lately, which is what bounds a botnet; addresses it has signed in
  from (`known_address_days`) never wait for it, so an attacker elsewhere cannot keep the user
  out.
- **Per source address, over all emails** (cache): `address_failures_per_window` failed
  sign-ins per fixed window, sized for a ward behind one NAT; successful sign-ins do not count.

Counts are taken *before* the password is checked (ADR 0013), so parallel guesses cannot all
slip past a limit while the first are still hashing; a success gives its reservation back.
An admin lifting the waits starts every address's count for that email afresh.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import secrets

from medcloud.config import IdentitySettings
from medcloud.identity import service
from medcloud.platform.cache import Cache
from medcloud.platform.errors import TooManyRequests

_PREFIX = "signin:"
_YEAR = 365 * 86_400.0


def wait_after(failures: int, *, free: int, first: float, longest: float) -> float:
    """Seconds to wait after `failures` failures in a row: none before `free` of them, then
    `first`, doubling with each further failure, never more than `longest`."""
    if failures < free:
        return 0.0
    # Past 2**60 the product only overflows; the cap has long been reached by then.
    return min(first * 2.0 ** min(failures - free, 60), longest)


def account_wait(policy: IdentitySettings, failures: int) -> float:
    """The account-wide wait `failures` failures (from every address) impose."""
    return wait_after(
        failures,
        free=policy.account_failures_before_wait,
        first=policy.first_wait_seconds,
        longest=policy.longest_wait_seconds,
    )


def address_wait(policy: IdentitySettings, failures: int) -> float:
    """The wait `failures` failures of one address against one email impose on that address."""
    return wait_after(
        failures,
        free=policy.failures_before_wait,
        first=policy.first_wait_seconds,
        longest=policy.longest_wait_seconds,
    )


def email_key(email: str) -> str:
    """Name an email in cache keys and audit entries without keeping the address itself."""
    return service.digest(email.lower())


@dataclasses.dataclass
class Attempt:
    """One sign-in attempt's place in the per-address limits; `admit` reserves it as a failure,
    `succeeded` gives the reservation back."""

    cache: Cache
    policy: IdentitySettings
    email: str
    source: str | None
    now: dt.datetime
    failures: int = 0
    """This address's failures against this email, this attempt included once admitted."""
    known_address: bool = False
    """The account signed in from this address lately, so its account-wide wait does not apply."""
    _pair_key: str = dataclasses.field(default="", init=False, repr=False)
    _window_key: str = dataclasses.field(default="", init=False, repr=False)

    @property
    def address(self) -> str:
        """The source address, or a stand-in shared by every caller without one."""
        return self.source or "unknown"

    async def admit(self) -> None:
        """Refuse with 429 while the address is over its budget or must wait for this email;
        otherwise count the attempt as a failure of both before the password is checked."""
        policy, now = self.policy, self.now.timestamp()
        window = int(now // policy.address_window_seconds)
        self._window_key = f"{_PREFIX}address:{self.address}:{window}"
        spent = int(await self.cache.get(self._window_key) or 0)
        if spent >= policy.address_failures_per_window:
            window_ends = (window + 1) * policy.address_window_seconds
            raise TooManyRequests(
                "too many failed sign-ins from this address",
                retry_after=math.ceil(window_ends - now),
            )
        key = email_key(self.email)
        epoch = (await self.cache.get(f"{_PREFIX}epoch:{key}") or b"0").decode()
        self._pair_key = f"{_PREFIX}pair:{epoch}:{key}:{self.address}"
        failures, not_before = _parse(await self.cache.get(self._pair_key))
        if now < not_before:
            raise TooManyRequests(
                "too many failed sign-ins for this email from this address",
                retry_after=math.ceil(not_before - now),
            )
        self.known_address = await self.cache.get(_known_key(key, self.address)) is not None
        # Nothing above yields to another request on the in-process cache, so reading and
        # reserving are one step there; on Redis two parallel guesses may share a count, which
        # the account's atomic count still bounds.
        self.failures = failures + 1
        wait = address_wait(policy, self.failures)
        await self.cache.set(
            self._pair_key,
            f"{self.failures} {now + wait}".encode(),
            ttl_seconds=policy.failures_forgotten_after_hours * 3600,
        )
        await self.cache.set(
            self._window_key, str(spent + 1).encode(), ttl_seconds=policy.address_window_seconds
        )

    @property
    def wait(self) -> float:
        """The wait this attempt's failure puts on its address, for this email."""
        return address_wait(self.policy, self.failures)

    async def succeeded(self) -> None:
        """Clear this address's count for the email, give the reservation in the address's
        budget back, and remember the address as one the account signs in from."""
        await self.cache.delete(self._pair_key)
        spent = int(await self.cache.get(self._window_key) or 0)
        if spent > 0:
            await self.cache.set(
                self._window_key,
                str(spent - 1).encode(),
                ttl_seconds=self.policy.address_window_seconds,
            )
        await self.cache.set(
            _known_key(email_key(self.email), self.address),
            b"1",
            ttl_seconds=self.policy.known_address_days * 86_400,
        )


async def forget_waits(cache: Cache, email: str) -> None:
    """Start every address's count for this email afresh (an admin lifted the waits)."""
    # Addresses cannot be listed in the cache, so the counts are renamed instead: a new epoch
    # orphans the old ones, which expire unread. A year outlives any count it orphans.
    await cache.set(
        f"{_PREFIX}epoch:{email_key(email)}", secrets.token_hex(8).encode(), ttl_seconds=_YEAR
    )


def _known_key(key: str, address: str) -> str:
    return f"{_PREFIX}known:{key}:{address}"


def _parse(value: bytes | None) -> tuple[int, float]:
    if value is None:
        return 0, 0.0
    failures, not_before = value.decode().split()
    return int(failures), float(not_before)
