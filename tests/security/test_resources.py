"""OWASP API4 (unrestricted resource consumption): bodies, pages, batches and ranges are
bounded on every route that takes them, and each caller's request rate is limited.

Sign-in guessing (per account and per address) is bounded too; that is tested where sign-in
lives (tests/integration/identity/test_owasp_api_top10.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from medcloud.bootstrap import load_contexts
from medcloud.config import RateLimitSettings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.security import routes
from tests.security.conftest import Deployment, own_settings
from tests.support.cast import invite
from tests.support.client import bearer, now, running

pytestmark = pytest.mark.asyncio(loop_scope="package")


def writes() -> list[routes.Endpoint]:
    """Every route that takes a body, public ones included."""
    return [e for e in routes.collected() if e.method in ("POST", "PUT", "PATCH")]


def body_limit(deployment: Deployment, endpoint: routes.Endpoint) -> int:
    """The largest body the edge lets through to the route."""
    settings = deployment.settings
    for context in load_contexts():
        for pattern, limit in context.large_bodies(settings):
            if re.fullmatch(pattern, endpoint.path.format(**deployment.ours.ids)):
                return limit
    return settings.max_body_bytes


async def chunks(total: int, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    """A body streamed without a length, as a client that lies about nothing sends one."""
    sent = 0
    while sent < total:
        part = min(size, total - sent)
        sent += part
        yield b" " * part


@pytest.mark.parametrize("endpoint", [pytest.param(e, id=str(e)) for e in writes()])
async def test_a_body_over_the_limit_gets_413_before_anything_reads_it(
    deployment: Deployment, endpoint: routes.Endpoint
) -> None:
    limit = body_limit(deployment, endpoint)
    url = endpoint.path.format(**deployment.ours.ids)
    kind = (
        "application/x-www-form-urlencoded" if endpoint.key in routes.FORMS else "application/json"
    )
    headers = deployment.cast.auth("alice_admin") | {"content-type": kind}
    answers = []
    if limit <= 16 * 1024 * 1024:
        # Announced: refused on the length alone, before any route runs.
        answers.append(
            await deployment.api.http.request(
                endpoint.method, url, content=b"{" + b" " * limit + b"}", headers=headers
            )
        )
    if endpoint.reads_body:
        # Streamed without a length: refused as it passes the limit. (A route that takes no
        # body never reads one, so there is nothing to refuse, and it would act.)
        answers.append(
            await deployment.api.http.request(
                endpoint.method, url, content=chunks(limit + 1), headers=headers
            )
        )
    assert answers, f"{endpoint}: nothing was sent"
    # A form's parser refuses a field over 1 MB sooner, with 400.
    refused = (400, 413) if endpoint.key in routes.FORMS else (413,)
    for response in answers:
        assert response.status_code in refused, response.text[:300]
        assert response.headers["content-type"].startswith("application/problem+json")


def limits() -> list[tuple[routes.Endpoint, str]]:
    """Every page-size parameter of every listing (`limit`, FHIR's `_count`)."""
    found = [(e, "limit") for e in routes.protected() if "limit" in e.query_params]
    # AuditQuery and FHIR searches read their parameters from a model or the raw query.
    found.append((next(e for e in routes.protected() if e.path == "/api/v1/audit"), "limit"))
    found += [
        (e, "_count")
        for e in routes.protected()
        if e.path in ("/fhir/r4/Patient", "/fhir/r4/Device", "/fhir/r4/Observation")
    ]
    return found


@pytest.mark.parametrize(
    "endpoint,parameter", [pytest.param(e, p, id=f"{e} {p}") for e, p in limits()]
)
async def test_a_page_larger_than_the_most_allowed_is_refused_or_cut_to_it(
    deployment: Deployment, endpoint: routes.Endpoint, parameter: str
) -> None:
    [probe, *_] = routes.probes(endpoint, deployment.ours)
    who = deployment.cast.auth(endpoint.holders()[0])
    separator = "&" if "?" in probe.url else "?"
    for size in ("1000000", "99999999999999999999", "0", "-1", "1e9", "ten"):
        response = await deployment.api.http.get(
            f"{probe.url}{separator}{parameter}={size}", headers=who
        )
        if response.status_code == 200 and size.isdigit() and int(size) > 1000:
            # FHIR lets a server return fewer than asked for (R4 search.html#count).
            body: Any = response.json()
            assert len(body.get("items", body.get("entry", []))) <= 10_000
        else:
            assert response.status_code in (400, 422), f"{parameter}={size}: {response.text}"


async def test_every_documented_page_size_has_a_maximum(deployment: Deployment) -> None:
    document = deployment.api.app.openapi()
    unbounded = [
        f"{method.upper()} {path} {parameter['name']}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
        if parameter["name"] in ("limit", "_count") and "maximum" not in parameter.get("schema", {})
    ]
    assert unbounded == []


async def test_a_batch_of_readings_beyond_the_most_one_request_may_carry_is_refused(
    deployment: Deployment,
) -> None:
    device = deployment.cast.devices["peters_oximeter"]
    at = now() - dt.timedelta(hours=1)
    readings = [
        {"timestamp": (at + dt.timedelta(milliseconds=i)).isoformat(), "measurements": {"spo2": 97}}
        for i in range(100_001)
    ]
    response = await deployment.api.send(device, {"readings": readings})
    assert response.status_code in (413, 422), response.text[:300]


async def test_a_chart_of_years_in_one_second_buckets_is_bounded(deployment: Deployment) -> None:
    device_id = deployment.ours.ids["device_id"]
    response = await deployment.api.http.get(
        f"/api/v1/devices/{device_id}/data/buckets",
        params={"start": "2000-01-01T00:00:00Z", "end": "2030-01-01T00:00:00Z", "bucket": 1},
        headers=deployment.cast.auth("carol_clinician"),
    )
    if response.status_code == 200:
        assert len(response.json()["items"]) <= deployment.settings.ingest.max_chart_points
    else:
        assert response.status_code == 422, response.text


async def test_deeply_nested_json_is_refused_without_a_server_error(
    deployment: Deployment,
) -> None:
    alice = deployment.cast.auth("alice_admin") | {"content-type": "application/json"}
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000):
        response = await deployment.api.http.post("/api/v1/wards", content=body, headers=alice)
        assert response.status_code in (400, 413, 422), response.text[:300]


async def into_a_fresh_minute() -> None:
    """Wait, if need be, so that a minute's requests fall in one window: the limiter counts
    in windows aligned to the clock's minutes."""
    second = time.time() % 60
    if second > 45:
        await asyncio.sleep(60.5 - second)


async def test_a_user_over_100_requests_a_minute_gets_429_with_retry_after(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The documented default (docs/security.md): 100 requests a minute per user. The shared
    # deployment relaxes every limit, so this one runs an app with the defaults.
    var_dir = tmp_path_factory.mktemp("rate") / "var"
    async with (
        own_settings(backend, var_dir, request, rate_limits=RateLimitSettings()) as settings,
        running(settings) as api,
    ):
        alice = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        nina = await invite(api, alice, "nina.nurse@stmary.example", "nurse", [])
        await into_a_fresh_minute()
        statuses = [
            (await api.http.get("/api/v1/users/me", headers=bearer(nina))).status_code
            for _ in range(100)
        ]
        assert statuses == [200] * 100
        over = await api.http.get("/api/v1/users/me", headers=bearer(nina))
        assert over.status_code == 429, over.text
        assert int(over.headers["retry-after"]) > 0
        assert over.headers["content-type"].startswith("application/problem+json")
        # The limit is nina's own: alice goes on, and probes stay answered (a limited client
        # must not make the platform look down).
        assert (await api.http.get("/api/v1/users/me", headers=bearer(alice))).status_code == 200
        assert (await api.http.get("/health")).status_code == 200


async def test_a_burst_of_requests_at_once_is_counted_like_one_after_another(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    var_dir = tmp_path_factory.mktemp("burst") / "var"
    async with (
        own_settings(backend, var_dir, request, rate_limits=RateLimitSettings()) as settings,
        running(settings) as api,
    ):
        token = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        await into_a_fresh_minute()
        answers = await asyncio.gather(
            *(api.http.get("/api/v1/users/me", headers=bearer(token)) for _ in range(300))
        )
    statuses = [r.status_code for r in answers]
    assert statuses.count(200) <= 100
    assert statuses.count(429) >= 200
