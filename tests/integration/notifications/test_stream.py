"""The live alarm stream over a real HTTP server: Server-Sent Events authorised like the alarm
list (a nurse sees her ward's alarms only), resumable with Last-Event-ID."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from medcloud.config import Settings
from medcloud.notifications.mailbox import LocalMailbox
from tests.integration.notifications.conftest import notification_settings, roster
from tests.support.cast import build_cast
from tests.support.client import Api, bearer, reading
from tests.support.streams import read_events, serving

STREAM = "/api/v1/alerts/stream"


async def events(
    api: Api,
    token: str,
    *,
    count: int,
    last_event_id: str | None = None,
    opened: asyncio.Event | None = None,
) -> list[dict[str, Any]]:
    """Read `count` events (comments and the opening position skipped) from a new stream;
    set `opened` once the stream has sent its first line, its starting position fixed."""
    headers = bearer(token) | ({"Last-Event-ID": last_event_id} if last_event_id else {})
    return await read_events(api, STREAM, headers, count=count, opened=opened)


@pytest.fixture
async def live(settings: Settings, mailbox: LocalMailbox) -> AsyncIterator[Api]:
    async with serving(notification_settings(settings, mailbox)) as api:
        yield api


async def test_a_nurse_sees_her_wards_alarms_live_and_resumes_after_a_break(
    live: Api,
) -> None:
    api = live
    cast = await build_cast(api)
    await roster(api, cast)
    nina_open, bob_open = asyncio.Event(), asyncio.Event()
    nina = asyncio.create_task(events(api, cast.tokens["nina_nurse"], count=1, opened=nina_open))
    bob = asyncio.create_task(events(api, cast.tokens["bob_other_ward"], count=1, opened=bob_open))
    # A stream starts at "now": send nothing before both are open.
    await asyncio.wait_for(asyncio.gather(nina_open.wait(), bob_open.wait()), 20)

    await api.send(cast.devices["peters_oximeter"], reading(heart_rate=160))
    [peters] = await asyncio.wait_for(nina, 20)
    assert peters["event"] == "alert.raised"
    assert peters["data"]["patient_id"] == cast.patients["peter"]["id"]
    assert "value" not in peters["data"]
    # Bob (Oncology) is not shown Peter's alarm: the first he sees is Olive's.
    await api.send(cast.devices["olives_monitor"], reading(heart_rate=165))
    [olives] = await asyncio.wait_for(bob, 20)
    assert olives["data"]["patient_id"] == cast.patients["olive"]["id"]

    # Nina's connection dropped after Peter's alarm; meanwhile carol acknowledged it.
    alert_id = peters["data"]["alert_id"]
    response = await api.http.post(
        f"/api/v1/alerts/{alert_id}/acknowledge", headers=bearer(cast.tokens["carol_clinician"])
    )
    assert response.status_code == 200
    resumed = await asyncio.wait_for(
        events(api, cast.tokens["nina_nurse"], count=1, last_event_id=peters["id"]), 20
    )
    assert [(e["event"], e["data"]["alert_id"]) for e in resumed] == [
        ("alert.acknowledged", alert_id)
    ]
    assert int(resumed[0]["id"]) > int(peters["id"])


async def test_the_stream_refuses_strangers_and_bad_positions(live: Api) -> None:
    api = live
    cast = await build_cast(api)
    anonymous = await api.http.get(STREAM)
    assert anonymous.status_code == 401
    technician = await api.http.get(STREAM, headers=bearer(cast.tokens["tess_technician"]))
    assert technician.status_code == 403
    bad = await api.http.get(
        STREAM, headers=bearer(cast.tokens["nina_nurse"]) | {"Last-Event-ID": "yesterday"}
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
