"""The daily run: one scheduled report per subject and day however many workers run it, and
the days missed while nothing ran are made up."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from sqlalchemy import delete, select, update

from medcloud.bootstrap import bootstrap
from medcloud.config import Settings
from medcloud.functions.daily_report import make_reports
from medcloud.platform.runtime import Runtime
from medcloud.reports import repository
from medcloud.reports.daily import run_once
from medcloud.reports.models import Report, ReportWatermark
from medcloud.reports.schemas import DailyRun
from tests.integration.analytics.helpers import runtime
from tests.support.cast import Cast
from tests.support.client import Api, bearer, now, reading


async def daily(
    worker: Runtime, *, day: dt.date | None = None, at: dt.datetime | None = None
) -> DailyRun:
    """One worker's daily run, as the scheduler starts it (at `at`) or `medcloud reports daily`
    does (now)."""
    return await run_once(worker, day=day, now=at)


async def backfill(api: Api, cast: Cast, day: dt.date) -> None:
    """Peter's oximeter's readings of a past day, sent late (a gateway catching up)."""
    noon = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
    batch = [reading(noon + dt.timedelta(minutes=5 * k), heart_rate=70 + k) for k in range(6)]
    response = await api.send(cast.devices["peters_oximeter"], {"readings": batch})
    assert response.status_code == 201, response.text


async def scheduled(api: Api, cast: Cast, day: dt.date) -> list[dict[str, Any]]:
    listed = await api.http.get(
        "/api/v1/reports", params={"limit": 200}, headers=bearer(cast.tokens["alice_admin"])
    )
    return [
        r
        for r in listed.json()["items"]
        if r["trigger"] == "scheduled" and r["day"] == day.isoformat()
    ]


async def past_assignment(api: Api, cast: Cast, since: dt.datetime) -> None:
    """Make Peter's oximeter his since `since`, as the devices context records it (the cast
    assigned it just now, and readings belong to whoever held the device when taken)."""
    from medcloud.devices.models import DeviceAssignment  # a test may reach in; contexts never

    async with runtime(api).write_sessions() as session:
        await session.execute(
            update(DeviceAssignment)
            .where(DeviceAssignment.device_id == cast.devices["peters_oximeter"]["id"])
            .values(started_at=since)
        )
        await session.commit()


async def test_workers_racing_for_the_same_day_make_one_report_per_scope(
    api: Api, cast: Cast, settings: Settings
) -> None:
    day = now().date() - dt.timedelta(days=2)
    await past_assignment(api, cast, dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC))
    await backfill(api, cast, day)
    workers = [bootstrap(settings), bootstrap(settings)]
    try:
        runs = await asyncio.gather(*(daily(worker, day=day) for worker in workers))
        again = await daily(runtime(api), day=day)
    finally:
        for worker in workers:
            await worker.database.dispose()
    made = await scheduled(api, cast, day)
    # St Mary's, and Cardiology, Peter's ward: Olive and Mallory's patient sent nothing.
    assert sorted((r["scope"], r["ward_id"]) for r in made) == [
        ("organisation", None),
        ("ward", cast.wards["cardiology"]),
    ]
    assert sum(run.made for run in runs) == 2 and again.made == 0
    [organisation] = [r for r in made if r["scope"] == "organisation"]
    assert organisation["summary"]["vitals"][0]["count"] == 6
    files = await api.http.get(organisation["downloads"]["pdf"])
    assert files.status_code == 200 and files.content.startswith(b"%PDF")


async def test_a_run_after_downtime_makes_up_the_days_it_missed(
    api: Api, cast: Cast, settings: Settings
) -> None:
    today = now().date()
    first, second = today - dt.timedelta(days=3), today - dt.timedelta(days=2)
    await past_assignment(api, cast, dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC))
    await backfill(api, cast, first)
    await backfill(api, cast, second)
    worker = runtime(api)
    async with worker.write_sessions() as session:
        await session.execute(delete(ReportWatermark))
        await repository.advance_watermark(session, today - dt.timedelta(days=5), now())
        await session.commit()
    # Back up the morning after `second`, past the 02:00 start: every day since the fifth
    # day back is owed, the last of them `second`.
    morning = dt.datetime.combine(second + dt.timedelta(days=1), dt.time(3), tzinfo=dt.UTC)
    run = await daily(worker, at=morning)
    assert run.days == [today - dt.timedelta(days=4), first, second]
    assert [r["scope"] for r in await scheduled(api, cast, first)].count("organisation") == 1
    assert [r["scope"] for r in await scheduled(api, cast, second)].count("organisation") == 1
    async with worker.read_sessions() as session:
        mark = await session.scalar(select(ReportWatermark.day))
    assert mark == second
    assert (await daily(worker, at=morning)).days == []


async def test_the_daily_function_makes_what_the_schedule_owes_once(
    api: Api, cast: Cast, settings: Settings
) -> None:
    # The serverless function, as EventBridge starts it after 02:00: yesterday is owed. Before
    # that start (a run between midnight and 02:00) the day before yesterday is the last owed,
    # so that is the day given readings.
    clock = now()
    owed = clock.date() - dt.timedelta(days=1 if clock.time() >= dt.time(2) else 2)
    await past_assignment(api, cast, dt.datetime.combine(owed, dt.time(), tzinfo=dt.UTC))
    await backfill(api, cast, owed)
    # As on a deployment where only the function makes daily reports: none made yet.
    async with runtime(api).write_sessions() as session:
        await session.execute(delete(ReportWatermark))
        await session.execute(delete(Report).where(Report.trigger == "scheduled"))
        await session.commit()
    first = await make_reports(settings)
    again = await make_reports(settings)
    assert owed.isoformat() in first["days"] and first["made"] >= 1
    assert again == {"made": 0, "days": []}
    assert [r["scope"] for r in await scheduled(api, cast, owed)].count("organisation") == 1
