"""Bad input gets a 4xx problem+json naming the problem, and nothing of it is stored."""

from __future__ import annotations

import datetime as dt
import gzip
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from medcloud.analytics.models import Alert
from medcloud.ingest.models import Reading
from medcloud.platform.models import OutboxMessage
from tests.support.client import Api, bearer, now, reading


async def stored(api: Api) -> tuple[int, int, int]:
    """Count readings, alerts and reading events in the database."""
    runtime = api.app.state.runtime
    async with runtime.read_sessions() as session:
        readings = await session.scalar(select(func.count()).select_from(Reading))
        alerts = await session.scalar(select(func.count()).select_from(Alert))
        events = await session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.routing_key == "device.data.collected")
        )
    return int(readings or 0), int(alerts or 0), int(events or 0)


def assert_problem(
    response: httpx.Response, status: int, field: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith("https://medcloud.dev/problems/")
    assert problem["title"] and problem["detail"]
    assert "Traceback" not in response.text
    if field is not None:
        assert field in [error["field"] for error in problem["errors"]], problem
    return problem


async def test_malformed_json_is_400_and_stores_nothing(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    response = await api.http.post(
        f"/api/v1/devices/{device['id']}/data",
        content=b'{"timestamp": "2026-01-01T00:00:00Z", "measurements": {',
        headers=bearer(device["token"]) | {"content-type": "application/json"},
    )
    assert_problem(response, 400, "body")
    assert await stored(api) == (0, 0, 0)


async def test_an_unknown_measurement_type_is_named(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    response = await api.send(device, reading(heart_rate=72, blood_alcohol=0.1))
    assert_problem(response, 422, "measurements.blood_alcohol")
    assert await stored(api) == (0, 0, 0)


async def test_an_out_of_range_value_in_a_batch_rejects_the_whole_batch(
    api: Api, alice: str
) -> None:
    device = await api.register_device(alice)
    t = now() - dt.timedelta(minutes=1)
    batch = [reading(t + dt.timedelta(seconds=i), heart_rate=150) for i in range(5)]
    batch[3]["measurements"]["spo2"] = 140
    problem = assert_problem(
        await api.send(device, {"readings": batch}), 422, "readings.3.measurements.spo2"
    )
    assert len(problem["errors"]) == 1
    assert await stored(api) == (0, 0, 0)


async def test_a_timestamp_too_far_in_the_future_is_rejected(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    future = now() + dt.timedelta(minutes=6)
    assert_problem(await api.send(device, reading(future, heart_rate=70)), 422, "timestamp")
    assert (
        await api.send(device, reading(now() + dt.timedelta(minutes=4), heart_rate=70))
    ).status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timestamp": "2026-11-30T10:00:00", "measurements": {"heart_rate": 70}}, "timestamp"),
        ({"timestamp": "yesterday", "measurements": {"heart_rate": 70}}, "timestamp"),
        (
            {"timestamp": "2026-11-30T10:00:00Z", "measurements": {"heart_rate": "70"}},
            "measurements.heart_rate",
        ),
        (
            {"timestamp": "2026-11-30T10:00:00Z", "measurements": {"heart_rate": True}},
            "measurements.heart_rate",
        ),
        ({"timestamp": "2026-11-30T10:00:00Z", "measurements": {}}, "measurements"),
        ({"timestamp": "2026-11-30T10:00:00Z"}, "body"),
        ({"readings": []}, "readings"),
        (
            {
                "readings": [
                    {
                        "timestamp": "2026-11-30T10:00:00Z",
                        "measurements": {"heart_rate": 70},
                        "extra": 1,
                    }
                ]
            },
            "readings.0.extra",
        ),
        ([1, 2, 3], "body"),
    ],
)
async def test_malformed_readings_are_named_by_field(
    api: Api, alice: str, body: Any, field: str
) -> None:
    device = await api.register_device(alice)
    assert_problem(await api.send(device, body), 422, field)
    assert await stored(api) == (0, 0, 0)


async def test_nan_is_not_a_measurement(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    response = await api.http.post(
        f"/api/v1/devices/{device['id']}/data",
        content=b'{"timestamp": "2026-11-30T10:00:00Z", "measurements": {"heart_rate": NaN}}',
        headers=bearer(device["token"]) | {"content-type": "application/json"},
    )
    assert response.status_code in (400, 422)
    assert_problem(response, response.status_code)
    assert await stored(api) == (0, 0, 0)


async def test_an_unknown_device_is_refused(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    response = await api.http.post(
        "/api/v1/devices/00000000-0000-0000-0000-000000000000/data",
        json=reading(heart_rate=70),
        headers=bearer(device["token"]),
    )
    assert_problem(response, 403)
    assert await stored(api) == (0, 0, 0)


async def test_another_devices_token_is_refused(api: Api, alice: str) -> None:
    mine = await api.register_device(alice, serial="MINE")
    theirs = await api.register_device(alice, serial="THEIRS")
    response = await api.http.post(
        f"/api/v1/devices/{mine['id']}/data",
        json=reading(heart_rate=150),
        headers=bearer(theirs["token"]),
    )
    assert_problem(response, 403)
    assert await stored(api) == (0, 0, 0)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer mcd_not-a-real-token"},
        {"Authorization": "Basic YTpi"},
        {"Authorization": "Bearer not.a.jwt"},
    ],
)
async def test_missing_or_bad_credentials_are_401(
    api: Api, alice: str, headers: dict[str, str]
) -> None:
    device = await api.register_device(alice)
    response = await api.http.post(
        f"/api/v1/devices/{device['id']}/data", json=reading(heart_rate=150), headers=headers
    )
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert await stored(api) == (0, 0, 0)


async def test_a_user_token_cannot_write_readings(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    response = await api.http.post(
        f"/api/v1/devices/{device['id']}/data", json=reading(heart_rate=150), headers=bearer(alice)
    )
    assert_problem(response, 403)
    assert await stored(api) == (0, 0, 0)


async def test_an_11_mb_body_is_413_before_it_is_read(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    body = b'{"readings": [' + b" " * (11 * 1024 * 1024) + b"]}"
    response = await api.http.post(
        f"/api/v1/devices/{device['id']}/data",
        content=body,
        headers=bearer(device["token"]) | {"content-type": "application/json"},
    )
    assert_problem(response, 413)
    assert await stored(api) == (0, 0, 0)


async def test_an_11_mb_body_without_length_is_cut_off_at_the_limit(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    chunk = b" " * (1024 * 1024)

    async def stream() -> Any:
        yield b'{"readings": ['
        for _ in range(11):
            yield chunk
        yield b"]}"

    response = await api.http.post(
        f"/api/v1/devices/{device['id']}/data",
        content=stream(),
        headers=bearer(device["token"]) | {"content-type": "application/json"},
    )
    assert_problem(response, 413)
    assert await stored(api) == (0, 0, 0)


async def test_a_duplicate_serial_number_is_a_conflict(api: Api, alice: str) -> None:
    await api.register_device(alice, serial="DUP-1")
    response = await api.http.post(
        "/api/v1/devices",
        json={"serial_number": "DUP-1", "model": "m", "manufacturer": "x"},
        headers=bearer(alice),
    )
    assert_problem(response, 409, "serial_number")


async def test_unknown_fields_on_device_registration_are_refused(api: Api, alice: str) -> None:
    response = await api.http.post(
        "/api/v1/devices",
        json={"serial_number": "S", "model": "m", "manufacturer": "x", "organisation_id": "other"},
        headers=bearer(alice),
    )
    assert_problem(response, 422, "organisation_id")


async def test_a_gzip_body_without_support_is_refused_cleanly(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    response = await api.http.post(
        f"/api/v1/devices/{device['id']}/data",
        content=gzip.compress(b'{"timestamp": "2026-11-30T10:00:00Z"}'),
        headers=bearer(device["token"]) | {"content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500
    assert await stored(api) == (0, 0, 0)


async def test_an_unknown_route_is_a_problem_too(api: Api) -> None:
    assert_problem(await api.http.get("/api/v1/nothing-here"), 404)
    assert_problem(await api.http.delete("/health"), 405)


async def test_a_bad_cursor_is_422(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    response = await api.http.get(
        f"/api/v1/devices/{device['id']}/data", params={"cursor": "bm9wZQ"}, headers=bearer(alice)
    )
    assert_problem(response, 422, "query.cursor")
