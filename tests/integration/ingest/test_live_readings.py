"""A patient's live readings over a real HTTP server: Server-Sent Events for whoever cares for
the patient, opened and audited once, and ended when the patient leaves the user's care."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from medcloud.config import Settings
from tests.support.cast import Cast, build_cast
from tests.support.client import Api, bearer, reading
from tests.support.streams import read_events, serving


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[tuple[Api, Cast]]:
    async with serving(settings) as api:
        yield api, await build_cast(api)


def stream_of(patient_id: str) -> str:
    return f"/api/v1/readings/latest/{patient_id}/stream"


async def ninas_stream_of_peter(
    api: Api, cast: Cast, *, count: int
) -> asyncio.Task[list[dict[str, Any]]]:
    """Nina (Cardiology) opens Peter's live readings; return the task reading `count` events,
    once the stream has started (it shows what is stored from then on)."""
    opened = asyncio.Event()
    path, token = stream_of(cast.patients["peter"]["id"]), cast.tokens["nina_nurse"]
    task = asyncio.create_task(read_events(api, path, bearer(token), count=count, opened=opened))
    await asyncio.wait_for(opened.wait(), 20)
    return task


async def test_a_nurse_sees_her_patients_new_readings_as_they_are_stored(
    live: tuple[Api, Cast],
) -> None:
    api, cast = live
    nina = await ninas_stream_of_peter(api, cast, count=2)
    sent = await api.send(cast.devices["peters_oximeter"], reading(heart_rate=88, spo2=97))
    assert sent.status_code == 201, sent.text
    events = await asyncio.wait_for(nina, 20)
    assert {(e["event"], e["data"]["type"], e["data"]["value"]) for e in events} == {
        ("reading", "heart_rate", 88),
        ("reading", "spo2", 97),
    }
    assert all(e["data"]["device_id"] == cast.devices["peters_oximeter"]["id"] for e in events)


async def test_the_stream_ends_when_the_patient_leaves_the_users_care(
    live: tuple[Api, Cast],
) -> None:
    api, cast = live
    peter = cast.patients["peter"]["id"]
    nina = await ninas_stream_of_peter(api, cast, count=1)
    moved = await api.http.patch(
        f"/api/v1/patients/{peter}",
        json={"ward_id": cast.wards["oncology"]},
        headers=bearer(cast.tokens["alice_admin"]),
    )
    assert moved.status_code == 200, moved.text
    [ended] = await asyncio.wait_for(nina, 20)
    assert ended == {"event": "ended", "data": {"status": 404}}


async def test_the_stream_refuses_strangers_before_it_opens(live: tuple[Api, Cast]) -> None:
    api, cast = live
    peter = stream_of(cast.patients["peter"]["id"])
    assert (await api.http.get(peter)).status_code == 401
    technician = await api.http.get(peter, headers=bearer(cast.tokens["tess_technician"]))
    assert technician.status_code == 403
    other_ward = await api.http.get(peter, headers=bearer(cast.tokens["bob_other_ward"]))
    assert other_ward.status_code == 404
    assert other_ward.headers["content-type"].startswith("application/problem+json")
