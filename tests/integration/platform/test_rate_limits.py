"""Rate limits over HTTP with the real defaults: per user, per device, per address, and one
budget across replicas that share Redis."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import redis.asyncio as redis

from medcloud.bootstrap import bootstrap
from medcloud.config import RateLimitSettings, Settings
from medcloud.platform.clock import FrozenClock
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.client import Api, bearer, reading, running

DEFAULT_POLICY = '"minute";q=100;w=60, "hour";q=1000;w=3600'
INGEST_POLICY = '"minute";q=300;w=60, "hour";q=10000;w=3600'
SIGN_IN = {"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}


@pytest.fixture
def clock() -> FrozenClock:
    """Windows start on the clock's minute; frozen, every request of a test falls in one."""
    return FrozenClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
def limited(settings: Settings) -> Settings:
    """The suite's settings with the default limits back."""
    return settings.model_copy(update={"rate_limits": RateLimitSettings()})


@pytest.fixture
async def api(limited: Settings, clock: FrozenClock) -> AsyncIterator[Api]:
    async with running(limited, runtime=bootstrap(limited, clock=clock)) as client:
        yield client


def seconds_to_next_minute(clock: FrozenClock) -> int:
    return 60 - clock.now().second


@asynccontextmanager
async def calling_from(api: Api, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the same app whose requests come from `address`."""
    transport = httpx.ASGITransport(app=api.app, client=(address, 40_000))
    async with httpx.AsyncClient(transport=transport, base_url="http://medcloud.test") as http:
        yield http


async def test_the_101st_request_in_a_minute_from_one_user_is_refused_with_retry_after(
    api: Api, alice: str, clock: FrozenClock
) -> None:
    for _ in range(100):
        assert (await api.http.get("/api/v1/users/me", headers=bearer(alice))).status_code == 200
    refused = await api.http.get("/api/v1/users/me", headers=bearer(alice))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "https://medcloud.dev/problems/too-many-requests"
    assert refused.headers["retry-after"] == str(seconds_to_next_minute(clock))
    # Another caller's budget is untouched: a sign-in is counted against its address.
    assert (await api.http.post("/api/v1/auth/token", data=SIGN_IN)).status_code == 200


async def test_limited_answers_tell_the_caller_its_budget(
    api: Api, alice: str, clock: FrozenClock
) -> None:
    reset = seconds_to_next_minute(clock)
    for remaining in (99, 98):
        answer = await api.http.get("/api/v1/users/me", headers=bearer(alice))
        assert answer.headers["ratelimit-policy"] == DEFAULT_POLICY
        assert answer.headers["ratelimit"] == f'"minute";r={remaining};t={reset}'
    for _ in range(98):
        await api.http.get("/api/v1/users/me", headers=bearer(alice))
    refused = await api.http.get("/api/v1/users/me", headers=bearer(alice))
    assert refused.status_code == 429
    assert refused.headers["ratelimit-policy"] == DEFAULT_POLICY
    assert refused.headers["ratelimit"] == f'"minute";r=0;t={reset}'


async def test_anonymous_sign_ins_are_limited_per_address(api: Api, clock: FrozenClock) -> None:
    async with (
        calling_from(api, "203.0.113.7") as mallory,
        calling_from(api, "198.51.100.20") as ward,
    ):
        for n in range(100):
            # Credentials that authenticate no one do not take a call out of its address's count.
            forged = bearer("not-a-token") if n % 2 else {}
            signed_in = await mallory.post("/api/v1/auth/token", data=SIGN_IN, headers=forged)
            assert signed_in.status_code == 200, n
        refused = await mallory.post("/api/v1/auth/token", data=SIGN_IN)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == str(seconds_to_next_minute(clock))
        assert refused.headers["ratelimit-policy"] == DEFAULT_POLICY
        assert (await ward.post("/api/v1/auth/token", data=SIGN_IN)).status_code == 200


async def test_health_readiness_and_metrics_are_never_limited(api: Api) -> None:
    async with calling_from(api, "192.0.2.44") as prober:
        for _ in range(100):
            assert (await prober.get("/.well-known/jwks.json")).status_code == 200
        assert (await prober.get("/.well-known/jwks.json")).status_code == 429
        for path in ("/health", "/ready", "/metrics"):
            answer = await prober.get(path)
            assert answer.status_code == 200, path
            assert "ratelimit" not in answer.headers


async def test_a_device_sending_a_reading_a_second_never_meets_the_ingest_limit(
    api: Api, alice: str, clock: FrozenClock
) -> None:
    device = await api.register_device(alice)
    # Two minutes of a 1 Hz device's readings, all in one minute.
    for n in range(120):
        sent = await api.send(device, reading(heart_rate=70 + n % 5))
        assert sent.status_code == 201, sent.text
    assert sent.headers["ratelimit-policy"] == INGEST_POLICY
    assert sent.headers["ratelimit"] == f'"minute";r=180;t={seconds_to_next_minute(clock)}'
    # The device spent its own budget: its registrar has made two calls, this one included.
    me = await api.http.get("/api/v1/users/me", headers=bearer(alice))
    assert me.headers["ratelimit"] == f'"minute";r=98;t={seconds_to_next_minute(clock)}'


@pytest.mark.services
@pytest.mark.parametrize("backend", ["services"])
async def test_two_replicas_sharing_redis_enforce_one_limit_between_them(
    api: Api, alice: str, limited: Settings, clock: FrozenClock
) -> None:
    # A second app instance with a runtime, limiter and Redis pool of its own, as a second
    # `medcloud serve` would have.
    second = bootstrap(limited, clock=FrozenClock(clock.now()))
    assert second.rate_limiter is not api.app.state.runtime.rate_limiter
    async with running(limited, runtime=second, workers=False) as replica:
        for _ in range(60):
            answer = await api.http.get("/api/v1/users/me", headers=bearer(alice))
            assert answer.status_code == 200
        for _ in range(40):
            answer = await replica.http.get("/api/v1/users/me", headers=bearer(alice))
            assert answer.status_code == 200
        refused = await replica.http.get("/api/v1/users/me", headers=bearer(alice))
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == str(seconds_to_next_minute(clock))
        assert (await api.http.get("/api/v1/users/me", headers=bearer(alice))).status_code == 429


@pytest.mark.services
@pytest.mark.parametrize("backend", ["services"])
async def test_counts_are_kept_under_the_deployments_redis_prefix(
    api: Api, alice: str, limited: Settings
) -> None:
    await api.http.get("/api/v1/users/me", headers=bearer(alice))
    client = redis.Redis.from_url(limited.redis_url)
    try:
        keys = [key.decode() async for key in client.scan_iter(f"{limited.redis_prefix}*")]
    finally:
        await client.aclose()
    counted = [key for key in keys if key.startswith(f"{limited.redis_prefix}ratelimit:")]
    assert any("/default/user:" in key for key in counted), keys
    assert any("/anonymous/address:" in key for key in counted), keys
