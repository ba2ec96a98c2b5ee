"""Rate limits: fixed windows on the clock, keys per caller, headers, and the edge middleware."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import httpx
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from structlog.testing import capture_logs

from medcloud.config import RateLimitSettings
from medcloud.platform.clock import FrozenClock, ManualTimer
from medcloud.platform.ratelimit import (
    RETRY_SECONDS,
    MemoryCounters,
    RateLimiter,
    RateLimitMiddleware,
    Tier,
    address_key,
)
from medcloud.platform.security import (
    IN_PROCESS,
    DevicePrincipal,
    Principal,
    Role,
    UserPrincipal,
)

# A quarter past the minute, half past the hour.
START = dt.datetime(2030, 5, 6, 7, 30, 15, tzinfo=dt.UTC)
ALICE = UserPrincipal("u-alice", "org-1", Role.CLINICIAN)
BOB = UserPrincipal("u-bob", "org-1", Role.NURSE)
MONITOR = DevicePrincipal("d-monitor", "org-1", "p-1")


def limiter(clock: FrozenClock, **limits: str) -> RateLimiter:
    return RateLimiter(MemoryCounters(), limits=RateLimitSettings(**limits), clock=clock)


def test_each_limit_is_named_for_its_window_in_the_policy_header() -> None:
    tier = Tier.parse("default", "100/minute;1000/hour")
    assert tier.policy_header == b'"minute";q=100;w=60, "hour";q=1000;w=3600'
    odd = Tier.parse("odd", "10/5 minutes; 2/second")
    assert odd.policy_header == b'"5minutes";q=10;w=300, "second";q=2;w=1'
    assert [p.per for p in odd.policies] == ["5 minutes", "second"]


async def test_the_101st_request_in_a_minute_is_refused_until_the_next_minute() -> None:
    clock = FrozenClock(START)
    limits = limiter(clock)
    for _ in range(100):
        assert (await limits.hit(limits.default, "user:u-alice")).allowed
    refused = await limits.hit(limits.default, "user:u-alice")
    assert not refused.allowed
    assert refused.retry_after == 45
    assert dict(refused.headers)[b"ratelimit"] == b'"minute";r=0;t=45'
    assert "100 requests per minute" in refused.detail
    clock.advance(seconds=45)
    again = await limits.hit(limits.default, "user:u-alice")
    assert again.allowed
    # 102 counted this hour, the one refused included.
    assert dict(again.headers)[b"ratelimit"] == b'"minute";r=99;t=60'


async def test_a_refusal_lasts_until_every_spent_limit_has_turned_over() -> None:
    clock = FrozenClock(START)
    limits = limiter(clock, default="5/minute;8/hour")
    for _ in range(5):
        assert (await limits.hit(limits.default, "user:u-alice")).allowed
    clock.advance(minutes=1)
    for _ in range(3):
        assert (await limits.hit(limits.default, "user:u-alice")).allowed
    refused = await limits.hit(limits.default, "user:u-alice")
    assert not refused.allowed
    # The hour, not the minute, is spent: 29 min 45 s remain of it.
    assert refused.retry_after == 29 * 60 - 15
    assert dict(refused.headers)[b"ratelimit"] == f'"hour";r=0;t={29 * 60 - 15}'.encode()
    assert "8 requests per hour" in refused.detail


async def test_headers_tell_the_limit_closest_to_running_out() -> None:
    clock = FrozenClock(START)
    limits = limiter(clock, default="10/minute;13/hour")
    first = await limits.hit(limits.default, "user:u-alice")
    assert dict(first.headers) == {
        b"ratelimit-policy": b'"minute";q=10;w=60, "hour";q=13;w=3600',
        b"ratelimit": b'"minute";r=9;t=45',
    }
    clock.advance(minutes=1)
    for _ in range(9):
        last = await limits.hit(limits.default, "user:u-alice")
    # One left this minute, three this hour.
    assert dict(last.headers)[b"ratelimit"] == b'"minute";r=1;t=45'
    clock.advance(minutes=1)
    fresh = await limits.hit(limits.default, "user:u-alice")
    # Nine left this minute, two this hour.
    assert dict(fresh.headers)[b"ratelimit"] == b'"hour";r=2;t=1665'


async def test_of_two_limits_as_close_to_running_out_the_longer_is_told() -> None:
    limits = limiter(FrozenClock(START), default="3/minute;3/hour")
    first = await limits.hit(limits.default, "user:u-alice")
    assert dict(first.headers)[b"ratelimit"] == b'"hour";r=2;t=1785'


async def test_people_devices_and_addresses_each_have_their_own_budget() -> None:
    limits = limiter(
        FrozenClock(START), default="1/minute", ingest="1/minute", anonymous="1/minute"
    )
    callers = [
        limits.caller(ALICE, ("10.0.0.1", 5000)),
        limits.caller(BOB, ("10.0.0.1", 5000)),
        limits.caller(MONITOR, ("10.0.0.1", 5000)),
        limits.caller(None, ("10.0.0.1", 5000)),
        limits.caller(None, ("10.0.0.2", 5000)),
    ]
    for tier, key in callers:
        assert (await limits.hit(tier, key)).allowed
    for tier, key in callers:
        assert not (await limits.hit(tier, key)).allowed


def test_devices_are_held_to_the_ingest_limits_and_people_to_the_default() -> None:
    limits = limiter(FrozenClock(START))
    assert limits.caller(MONITOR, None) == (limits.ingest, "device:d-monitor")
    assert limits.caller(ALICE, None) == (limits.default, "user:u-alice")
    assert limits.caller(None, ("192.0.2.7", 1)) == (limits.anonymous, "address:192.0.2.7")
    assert limits.ingest.policy_header == b'"minute";q=300;w=60, "hour";q=10000;w=3600'


@pytest.mark.parametrize(
    ("client", "key"),
    [
        (("192.0.2.7", 4000), "192.0.2.7"),
        (("2001:db8:1:2:aaaa::1", 4000), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::9", 4001), "2001:db8:1:2::/64"),
        (("::ffff:192.0.2.7", 4000), "192.0.2.7"),
        (("testclient", 50000), "testclient"),
        (None, "unknown"),
    ],
)
def test_an_address_is_counted_whole_and_an_ipv6_host_by_its_64(
    client: Sequence[object] | None, key: str
) -> None:
    assert address_key(client) == key


async def test_a_device_sending_every_reading_twice_at_1_hz_is_never_refused() -> None:
    clock = FrozenClock(START)
    limits = limiter(clock)
    tier, key = limits.caller(MONITOR, None)
    for second in range(2 * 3600):
        for _attempt in range(2):
            assert (await limits.hit(tier, key)).allowed, f"refused at {second} s"
        if second % 30 == 0:
            assert (await limits.hit(tier, key)).allowed  # heartbeat
        clock.advance(seconds=1)


async def test_a_device_looping_without_pause_is_stopped_within_the_minute() -> None:
    clock = FrozenClock(START)
    limits = limiter(clock)
    tier, key = limits.caller(MONITOR, None)
    allowed = 0
    while (await limits.hit(tier, key)).allowed:
        allowed += 1
    assert allowed == 300


class Broken(MemoryCounters):
    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:  # noqa: ARG002
        self.asked += 1
        raise ConnectionError("redis is down")

    async def check(self) -> bool:
        return False


async def test_a_limiter_that_cannot_count_lets_requests_through() -> None:
    limits = RateLimiter(
        Broken(), limits=RateLimitSettings(default="1/minute"), clock=FrozenClock(START)
    )
    for _ in range(3):
        decision = await limits.hit(limits.default, "user:u-alice")
        assert decision.allowed
        assert decision.headers == ()


async def test_a_storage_that_failed_is_asked_again_only_after_a_pause() -> None:
    # A Redis cut off without a reset answers nothing until the reply timeout: paid by every
    # request, that would stop readings as surely as refusing them.
    clock = FrozenClock(START)
    storage = Broken()
    limits = RateLimiter(storage, limits=RateLimitSettings(default="1/minute"), clock=clock)
    for _ in range(3):
        assert (await limits.hit(limits.default, "user:u-alice")).allowed
    assert storage.asked == 1
    clock.advance(seconds=RETRY_SECONDS)
    assert (await limits.hit(limits.default, "user:u-alice")).allowed
    assert storage.asked == 2


async def test_a_limiter_starting_without_its_storage_says_so_and_starts() -> None:
    limits = RateLimiter(Broken(), limits=RateLimitSettings(), clock=FrozenClock(START))
    with capture_logs() as logs:
        await limits.connect()
    assert [entry["event"] for entry in logs] == ["ratelimit.unavailable"]


async def test_counters_of_past_windows_are_swept_away() -> None:
    timer = ManualTimer()
    counters = MemoryCounters(sweep_seconds=10, timer=timer)
    assert await counters.incr("minute-1", 60) == 1
    assert await counters.incr("minute-1", 60) == 2
    assert await counters.incr("hour-1", 3600) == 1
    timer.advance(61)
    assert await counters.get("minute-1") == 0
    assert await counters.incr("minute-2", 60) == 1
    assert len(counters) == 2  # minute-1 is gone, hour-1 stays
    assert await counters.get("hour-1") == 1


def test_settings_refuse_limits_they_cannot_read() -> None:
    with pytest.raises(ValidationError, match="lots/minute"):
        RateLimitSettings(default="lots/minute")


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def edge(limits: RateLimiter, principals: dict[str, Principal]) -> Starlette:
    async def identify(scope: Scope) -> Principal | None:
        for name, value in scope["headers"]:
            if name == b"authorization":
                return principals.get(value.decode().removeprefix("Bearer "))
        return None

    app = Starlette(routes=[Route("/{path:path}", whoami, methods=["GET", "POST"])])
    app.add_middleware(
        RateLimitMiddleware, limiter=limits, identify=identify, unlimited=["/health"]
    )
    return app


def client(app: Starlette, address: str = "198.51.100.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 4000))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_the_edge_refuses_a_caller_over_its_limit_with_problem_json() -> None:
    limits = limiter(FrozenClock(START), default="2/minute")
    async with client(edge(limits, {"alice": ALICE})) as http:
        for remaining in (1, 0):
            answer = await http.get("/api/v1/users/me", headers={"Authorization": "Bearer alice"})
            assert answer.status_code == 200
            assert answer.headers["ratelimit"] == f'"minute";r={remaining};t=45'
        refused = await http.get("/api/v1/users/me", headers={"Authorization": "Bearer alice"})
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "45"
    assert refused.headers["ratelimit-policy"] == '"minute";q=2;w=60'
    assert refused.json()["type"] == "https://medcloud.dev/problems/too-many-requests"
    assert refused.json()["instance"] == "/api/v1/users/me"


async def test_the_app_calling_itself_spends_nothing_of_the_page_it_serves() -> None:
    # A dashboard page is counted once; the API calls it makes to itself in-process carry a
    # scope key no HTTP request can, and are not counted again.
    limits = limiter(FrozenClock(START), default="1/minute")
    app = edge(limits, {"alice": ALICE})

    async def in_process(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, IN_PROCESS: True}, receive, send)

    alice = {"Authorization": "Bearer alice"}
    async with client(app) as http:
        assert (await http.get("/patients/p-1", headers=alice)).status_code == 200
        transport = httpx.ASGITransport(app=in_process)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as itself:
            for _ in range(3):
                assert (await itself.get("/api/v1/users/me", headers=alice)).status_code == 200
        # A header of that name is no scope key: from outside, alice's budget is spent.
        forged = await http.get("/api/v1/users/me", headers=alice | {IN_PROCESS: "1"})
        assert forged.status_code == 429


async def test_the_edge_counts_anonymous_calls_per_address_and_leaves_health_alone() -> None:
    limits = limiter(FrozenClock(START), anonymous="1/minute")
    app = edge(limits, {})
    async with client(app, "203.0.113.5") as first, client(app, "203.0.113.6") as second:
        assert (await first.post("/api/v1/auth/token")).status_code == 200
        assert (await first.post("/api/v1/auth/token")).status_code == 429
        # Credentials that do not authenticate leave the call anonymous.
        forged = await first.post("/api/v1/auth/token", headers={"Authorization": "Bearer x"})
        assert forged.status_code == 429
        assert (await second.post("/api/v1/auth/token")).status_code == 200
        health = await first.get("/health")
    assert health.status_code == 200
    assert "ratelimit" not in health.headers
