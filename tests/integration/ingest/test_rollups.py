"""Chart rollups: a chart read from minute and hour rollups equals one read from every reading.

Readings are written as the writer writes them: out of order, some twice, some late, for two
patients and for none. The rollup path (whole minutes or hours from the rollups, the
ragged ends from readings) and the path that reads every reading must agree on every bucket.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import pytest

from medcloud.ingest import repository, rollups
from medcloud.ingest.queries import chart_bucket
from medcloud.ingest.repository import Row
from medcloud.ingest.series import SeriesIds
from medcloud.ingest.writer import Job, store
from medcloud.platform.runtime import Runtime
from tests.support.client import Api, now


async def both_paths(
    api: Api,
    device_id: str,
    start: dt.datetime,
    end: dt.datetime,
    size: int,
    patients: frozenset[str] | None = None,
) -> tuple[rollups.Buckets, rollups.Buckets]:
    async with api.app.state.runtime.read_sessions() as session:
        series = await repository.device_series(session, device_id, patients)
        rolled = await rollups.buckets(session, series, start=start, end=end, bucket_seconds=size)
        raw = await rollups.raw_buckets(session, series, start=start, end=end, bucket_seconds=size)
    return rolled, raw


def same(rolled: rollups.Buckets, raw: rollups.Buckets) -> None:
    assert [(t, n, c) for t, n, _lo, _hi, _avg, c in rolled] == [
        (t, n, c) for t, n, _lo, _hi, _avg, c in raw
    ]
    for (_, _, lo, hi, avg, _), (_, _, raw_lo, raw_hi, raw_avg, _) in zip(rolled, raw, strict=True):
        assert (lo, hi) == (raw_lo, raw_hi)
        assert avg == pytest.approx(raw_avg, rel=1e-9)


async def test_charts_from_rollups_equal_charts_from_every_reading(api: Api, alice: str) -> None:
    rng = random.Random(5)
    device = await api.register_device(alice)
    runtime = api.app.state.runtime
    end = now().replace(microsecond=0)
    start = end - dt.timedelta(hours=30)
    patients = ["p-first", "p-second", None]  # a device that moved, and readings of no one
    codes = ("heart_rate", "respiratory_rate")
    series = await SeriesIds(runtime.uow).of_device(
        "o", device["id"], {(code, patient) for code in codes for patient in patients}
    )
    rows = []
    for code in codes:
        for _ in range(800):
            patient = rng.choice(patients)
            at = start + dt.timedelta(
                seconds=rng.randrange(30 * 3600), microseconds=rng.choice((0, 5))
            )
            value = float(rng.randint(40, 160))
            sid = series[(code, patient)]
            rows.append(Row("o", device["id"], patient, code, value, "/min", at, end, False, sid))
    unique = list({(row.device_id, row.type, row.timestamp): row for row in rows}.values())
    batches = [unique[i : i + 100] for i in range(0, len(unique), 100)]
    rng.shuffle(batches)  # out of order: late and backfilled readings join their buckets
    for n, batch in enumerate(batches):
        await _store(runtime, batch)
        if n % 3 == 0:  # sent again: stored, and rolled up, once
            await _store(runtime, batch[:30])

    for size in (60, 300, 660, 1200, 3600, 6 * 3600):
        for lo, hi in (
            (start, end),
            (start + dt.timedelta(seconds=17), end - dt.timedelta(seconds=41)),
        ):
            rolled, raw = await both_paths(api, device["id"], lo, hi, size)
            assert sum(c for *_, c in raw) == len(unique) or lo != start
            same(rolled, raw)
    for scope in ({"p-first"}, {"p-first", "p-second"}):
        rolled, raw = await both_paths(api, device["id"], start, end, 600, frozenset(scope))
        assert 0 < sum(c for *_, c in rolled) < len(unique)
        same(rolled, raw)


async def _store(runtime: Runtime, rows: list[Row]) -> None:
    future: asyncio.Future[list[Row]] = asyncio.get_running_loop().create_future()
    await store(runtime.uow, [Job("o", rows[0].device_id, rows[0].received_at, rows, future)])


def test_chart_buckets_are_whole_minutes_five_minutes_or_hours_from_a_minute_up() -> None:
    sizes = (1, 59, 60, 61, 599, 600, 605, 1008, 21_599, 21_600, 21_601)
    assert [chart_bucket(s) for s in sizes] == [
        1,
        59,
        60,
        120,
        600,
        600,
        900,
        1200,
        21_600,
        21_600,
        25_200,
    ]
