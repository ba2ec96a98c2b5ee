"""Series ids: a fleet coming online makes its series in a few transactions, each id right."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from medcloud.ingest.models import ReadingSeries
from medcloud.ingest.series import SeriesIds
from medcloud.platform.uow import UnitOfWork
from tests.support.client import Api


async def test_concurrent_first_readings_of_many_devices_share_the_making(api: Api) -> None:
    runtime = api.app.state.runtime
    opened = 0

    def counting() -> UnitOfWork:
        nonlocal opened
        opened += 1
        uow: UnitOfWork = runtime.uow()
        return uow

    series = SeriesIds(counting)
    needed = {("heart_rate", "p"), ("spo2", "p"), ("heart_rate", None)}
    devices = [f"device-{n:03}" for n in range(200)]
    answers = await asyncio.gather(*(series.of_device("o", d, needed) for d in devices))

    # One round for the first device, one for all those that queued behind it (a few more
    # where the scheduler let some arrive late), never one each.
    assert opened <= 4
    async with runtime.read_sessions() as session:
        stored: dict[Any, int] = {
            (d, t, p): i
            for d, t, p, i in await session.execute(
                select(
                    ReadingSeries.device_id,
                    ReadingSeries.type,
                    ReadingSeries.patient_key,
                    ReadingSeries.id,
                )
            )
        }
    assert len(stored) == len(devices) * len(needed)
    for device, answer in zip(devices, answers, strict=True):
        assert answer == {(t, p): stored[(device, t, p or "")] for t, p in needed}
    # Known now: asking again opens nothing.
    assert await series.of_device("o", devices[7], needed) == answers[7]
    assert opened <= 4
