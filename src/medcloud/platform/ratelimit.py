"""Rate limits at the HTTP edge: each caller's requests, counted in fixed windows with `limits`.

A caller is the principal its bearer token authenticates (a user, or a device, whose calls are
its readings above all) or else the address it calls from. One ASGI middleware asks before
routing, so a refused request costs no route, body or database; it authenticates the token to
know whose request it is, and the route takes that answer rather than asking again
(`platform/http.py`). Counts live in Redis when the deployment has one, so every replica spends
the same budget, and in this process's memory otherwise.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass

import redis.asyncio as redis
import structlog
from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage, Storage
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from medcloud.config import RateLimitSettings, Settings
from medcloud.platform.clock import Clock, SystemTimer, Timer
from medcloud.platform.errors import TooManyRequests, problem_response
from medcloud.platform.security import IN_PROCESS, DevicePrincipal, Principal, UserPrincipal

log = structlog.get_logger(__name__)

REDIS_CONNECT_SECONDS = 1.0
"""How long a hit waits to connect to Redis before the request goes through uncounted."""
REDIS_REPLY_SECONDS = 5.0
"""How long a hit waits for Redis's answer on a connection it has. Long, because the wait is
measured on this process's event loop: in a burst the answer is in the socket long before the
loop, busy with the burst's other requests, reads it, and a short timeout let those requests
through uncounted exactly when they should be counted. A Redis that is gone costs this once,
not on every request: see `RETRY_SECONDS`."""
REDIS_CONNECTIONS = 100
"""Connections the limiter keeps to Redis at most; more concurrent hits wait for one."""
REDIS_QUEUE_SECONDS = 5.0
"""How long a hit waits for one of those connections while all are busy: a burst on a loaded
host queues rather than going through uncounted."""
RETRY_SECONDS = 5.0
"""After the storage fails, how long requests go through uncounted before it is asked again,
so that a Redis cut off without a reset costs one wait, not one on every request."""
_WARN_EVERY_SECONDS = 60.0

Identify = Callable[[Scope], Awaitable[Principal | None]]
"""Authenticate a request's credentials, if any, before routing; None for an anonymous one."""


@dataclass(frozen=True)
class Policy:
    """One limit: `quota` requests per window of `window` seconds, named for the headers."""

    name: str
    per: str
    item: RateLimitItem
    quota: int
    window: int


@dataclass(frozen=True)
class Tier:
    """The limits one kind of caller is held to, all at once."""

    name: str
    policies: tuple[Policy, ...]
    policy_header: bytes
    """`RateLimit-Policy`, the same on every answer: `"minute";q=100;w=60, "hour";…`."""

    @classmethod
    def parse(cls, name: str, spec: str) -> Tier:
        """Read `limits` notation (`100/minute;1000/hour`)."""
        policies = []
        for item in parse_many(spec):
            unit = item.GRANULARITY.name
            per = unit if item.multiples == 1 else f"{item.multiples} {unit}s"
            policies.append(Policy(per.replace(" ", ""), per, item, item.amount, item.get_expiry()))
        header = ", ".join(f'"{p.name}";q={p.quota};w={p.window}' for p in policies)
        return cls(name, tuple(policies), header.encode())


@dataclass(frozen=True)
class Decision:
    """What one request found: whether it may go on, and the headers telling its budget."""

    allowed: bool
    headers: tuple[tuple[bytes, bytes], ...] = ()
    retry_after: int = 0
    """Seconds until every exhausted limit has started a new window."""
    detail: str = ""


UNCOUNTED = Decision(allowed=True)


class RateLimiter:
    """Count each caller's requests against its tier, in windows aligned to the clock.

    Fixed windows rather than a moving one: a window is one counter per caller, and one atomic
    increment both counts the request and tells how much is left, whereas a moving window keeps
    a timestamp per request (a thousand per caller for the hourly limit) and needs a second
    call to learn the remainder. What that gives up, a caller squeezing up to twice its quota
    around the turn of a window, is no matter for limits that stop abuse. Windows start on the
    clock's minute and hour, not at a caller's first request, so the time to reset is known
    without asking the storage, every replica agrees on it, and tests move it with the clock.
    The increment is the storage's own, the one `limits`' FixedWindowRateLimiter makes, called
    directly because that strategy's `hit` keeps the count to itself.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        limits: RateLimitSettings,
        clock: Clock,
        concurrent: bool = False,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.default = Tier.parse("default", limits.default)
        self.ingest = Tier.parse("ingest", limits.ingest)
        self.anonymous = Tier.parse("anonymous", limits.anonymous)
        self._storage = storage
        self._clock = clock
        # On Redis each limit's increment is a round trip: sent together, a request waits for
        # one. In memory they are plain calls, which tasks would only slow down.
        self._concurrent = concurrent
        self._on_close = on_close
        self._warned_at: float | None = None
        self._retry_at = 0.0

    def caller(
        self, principal: Principal | None, client: Sequence[object] | None
    ) -> tuple[Tier, str]:
        """Return the tier and key of whoever makes a request."""
        if isinstance(principal, DevicePrincipal):
            return self.ingest, f"device:{principal.device_id}"
        if isinstance(principal, UserPrincipal):
            return self.default, f"user:{principal.user_id}"
        return self.anonymous, f"address:{address_key(client)}"

    async def hit(self, tier: Tier, caller: str) -> Decision:
        """Count one request of `caller`; refuse it if any of the tier's limits is spent."""
        now = self._clock.now().timestamp()
        if now < self._retry_at:
            return UNCOUNTED
        windows = [int(now // policy.window) for policy in tier.policies]
        keys = [
            policy.item.key_for(tier.name, caller, window)
            for policy, window in zip(tier.policies, windows, strict=True)
        ]
        try:
            counts = await self._count(tier, keys)
        except Exception as error:  # noqa: BLE001  (a limiter that cannot count must not stop readings)
            self._retry_at = self._clock.now().timestamp() + RETRY_SECONDS
            self._unavailable(error)
            return UNCOUNTED
        spent: list[tuple[Policy, int]] = []
        left: list[tuple[int, int, Policy]] = []
        for policy, window, count in zip(tier.policies, windows, counts, strict=True):
            reset = max(1, math.ceil((window + 1) * policy.window - now))
            if count > policy.quota:
                spent.append((policy, reset))
            left.append((max(0, policy.quota - count), -reset, policy))
        if spent:
            # Only once every spent limit has turned over may the caller go on.
            policy, reset = max(spent, key=lambda pair: pair[1])
            return Decision(
                allowed=False,
                headers=_headers(tier, policy, 0, reset),
                retry_after=reset,
                detail=(
                    f"over the limit of {policy.quota} requests per {policy.per}; "
                    f"try again in {reset} s"
                ),
            )
        # The limit closest to running out, and of two as close the one that lasts longer.
        remaining, negative_reset, policy = min(left, key=lambda entry: entry[:2])
        return Decision(allowed=True, headers=_headers(tier, policy, remaining, -negative_reset))

    async def _count(self, tier: Tier, keys: list[str]) -> list[int]:
        pairs = zip(keys, tier.policies, strict=True)
        if self._concurrent:
            return list(
                await asyncio.gather(*(self._storage.incr(key, p.window) for key, p in pairs))
            )
        return [await self._storage.incr(key, p.window) for key, p in pairs]

    async def connect(self) -> None:
        """Open a first connection to the storage, so the first request does not wait for it.

        An unreachable storage is logged and not raised: the limiter lets requests through
        uncounted until it answers, and a process must start without it.
        """
        if not await self._storage.check():  # a ping; `limits` turns its failures into False
            self._unavailable(ConnectionError("no answer to PING"))

    def _unavailable(self, error: Exception) -> None:
        now = asyncio.get_running_loop().time()
        if self._warned_at is None or now - self._warned_at >= _WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning("ratelimit.unavailable", error=type(error).__name__)

    async def close(self) -> None:
        """Release the storage's connections."""
        if self._on_close is not None:
            await self._on_close()


def _headers(
    tier: Tier, policy: Policy, remaining: int, reset: int
) -> tuple[tuple[bytes, bytes], ...]:
    # draft-ietf-httpapi-ratelimit-headers: the policies, and the one closest to binding.
    return (
        (b"ratelimit-policy", tier.policy_header),
        (b"ratelimit", f'"{policy.name}";r={remaining};t={reset}'.encode()),
    )


def address_key(client: Sequence[object] | None) -> str:
    """Name the address a request comes from, as its limit is kept: an IPv6 client by its /64,
    which one host can fill with addresses of its own."""
    host = str(client[0]) if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class MemoryCounters(Storage):
    """`limits`' fixed-window storage for one process.

    `limits`' own MemoryStorage sweeps every counter after each hit once the event loop yields,
    so each request costs time in proportion to the callers counted (0.2 ms at a thousand, 1.7
    ms at ten thousand); this one sweeps at most every `sweep_seconds`.
    """

    def __init__(self, *, sweep_seconds: float = 10.0, timer: Timer | None = None) -> None:
        super().__init__()
        self._counters: dict[str, tuple[int, float]] = {}
        self._sweep_seconds = sweep_seconds
        self._timer = timer or SystemTimer()
        self._next_sweep = 0.0

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        """Nothing here fails the way a connection does."""
        return ()

    def __len__(self) -> int:
        return len(self._counters)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add `amount` to `key`'s count, starting it afresh for `expiry` seconds if expired."""
        now = self._timer.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self._sweep_seconds
            self._counters = {k: c for k, c in self._counters.items() if c[1] > now}
        count, expires = self._counters.get(key, (0, 0.0))
        if expires <= now:
            count, expires = 0, now + expiry
        count += amount
        self._counters[key] = (count, expires)
        return count

    async def get(self, key: str) -> int:
        """Return `key`'s count, 0 once expired."""
        count, expires = self._counters.get(key, (0, 0.0))
        return count if expires > self._timer.monotonic() else 0

    async def get_expiry(self, key: str) -> float:
        """Return when `key`'s count expires, in seconds since the epoch."""
        now = self._timer.monotonic()
        _, expires = self._counters.get(key, (0, now))
        return time.time() + max(0.0, expires - now)

    async def check(self) -> bool:
        """Always reachable."""
        return True

    async def reset(self) -> int | None:
        """Forget every count; return how many there were."""
        count = len(self._counters)
        self._counters.clear()
        return count

    async def clear(self, key: str) -> None:
        """Forget `key`'s count."""
        self._counters.pop(key, None)


def create_rate_limiter(settings: Settings, clock: Clock) -> RateLimiter | None:
    """Build the limiter the settings describe, or None when limits are off; connects nothing."""
    limits = settings.rate_limits
    if not limits.enabled:
        return None
    if not settings.redis_url:
        return RateLimiter(MemoryCounters(), limits=limits, clock=clock)
    # A pool of its own, made from the cache's URL, so closing it is the limiter's to do; the
    # storage's URI then only picks the redis-py client.
    # Blocking: a burst of more concurrent requests than connections waits its turn for one;
    # redis-py's plain pool refused the excess, which the limiter let through uncounted.
    pool = redis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=REDIS_CONNECTIONS,
        timeout=REDIS_QUEUE_SECONDS,
        socket_timeout=REDIS_REPLY_SECONDS,
        socket_connect_timeout=REDIS_CONNECT_SECONDS,
    )
    storage = RedisStorage(
        "async+redis://",
        implementation="redispy",
        key_prefix=f"{settings.redis_prefix}ratelimit",
        connection_pool=pool,  # type: ignore[arg-type]  # typed as scalars; redis-py takes a pool
    )
    return RateLimiter(storage, limits=limits, clock=clock, concurrent=True, on_close=pool.aclose)


class RateLimitMiddleware:
    """Hold every HTTP request, but those to the operational endpoints, to its caller's limits,
    and tell the caller its budget on each answer."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        identify: Identify,
        unlimited: Collection[str] = (),
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.identify = identify
        self.unlimited = frozenset(unlimited)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.unlimited or scope.get(IN_PROCESS):
            await self.app(scope, receive, send)
            return
        principal = await self.identify(scope)
        tier, caller = self.limiter.caller(principal, scope.get("client"))
        decision = await self.limiter.hit(tier, caller)
        if not decision.allowed:
            await self._refuse(scope, receive, send, decision)
            return
        if not decision.headers:
            await self.app(scope, receive, send)
            return

        async def send_with_budget(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *decision.headers]
            await send(message)

        await self.app(scope, receive, send_with_budget)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, decision: Decision) -> None:
        # Rendered by the app's one error mapping, so a FHIR path answers an OperationOutcome.
        error = TooManyRequests(decision.detail, retry_after=decision.retry_after)
        budget = {name.decode(): value.decode() for name, value in decision.headers}
        response = problem_response(
            status=error.status,
            slug=error.slug,
            title=error.title,
            detail=error.detail,
            request=Request(scope),
            headers=error.headers | budget,
        )
        await response(scope, receive, send)
