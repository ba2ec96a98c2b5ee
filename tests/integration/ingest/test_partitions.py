"""On PostgreSQL the readings live in monthly partitions, made ahead and dropped when expired."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from medcloud.ingest import partitions
from tests.support.client import Api, eventually, now, reading

pytestmark = [pytest.mark.services, pytest.mark.parametrize("backend", ["services"])]


async def names(api: Api) -> set[str]:
    async with api.app.state.runtime.read_sessions() as session:
        rows = await session.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'reading'"
            )
        )
        return set(rows.scalars().all())


async def test_the_readings_table_is_partitioned_by_month_ahead_of_time(
    api: Api, alice: str
) -> None:
    found = await names(api)
    this_month = partitions.month_start(now())
    assert {
        partitions.partition_name(partitions.add_months(this_month, i)) for i in range(4)
    } <= found
    assert "reading_default" in found


async def placed(api: Api, device_id: str) -> dict[str, int]:
    """Where each of a device's readings is stored: partition name → count."""
    async with api.app.state.runtime.read_sessions() as session:
        rows = await session.execute(
            text(
                "SELECT r.tableoid::regclass::text, count(*) FROM reading r "
                "JOIN reading_series s ON s.id = r.series_id WHERE s.device_id = :device "
                "GROUP BY 1"
            ),
            {"device": device_id},
        )
        return {str(name): int(count) for name, count in rows.all()}


async def rolled_up(api: Api, device_id: str) -> dict[tuple[int, int], int]:
    """Readings counted in a device's rollups: (month, width) → count."""
    async with api.app.state.runtime.read_sessions() as session:
        rows = await session.execute(
            text(
                "SELECT extract(month FROM bucket_start AT TIME ZONE 'UTC')::int, width, "
                "sum(count) FROM reading_rollup r JOIN reading_series s ON s.id = r.series_id "
                "WHERE s.device_id = :device GROUP BY 1, 2"
            ),
            {"device": device_id},
        )
        return {(int(m), int(w)): int(n) for m, w, n in rows.all()}


async def test_a_backfill_gets_its_own_months_partition_and_expires_whole(
    api: Api, alice: str
) -> None:
    device = await api.register_device(alice)
    two_months_ago = partitions.add_months(partitions.month_start(now()), -2)
    backfill = [
        reading(two_months_ago + dt.timedelta(days=3, seconds=i), heart_rate=60 + i)
        for i in range(5)
    ]
    older = partitions.add_months(two_months_ago, -13) + dt.timedelta(hours=1)
    batch = {"readings": [*backfill, reading(older, heart_rate=59)]}
    assert (await api.send(device, batch)).status_code == 201
    recent = reading(now() - dt.timedelta(seconds=5), heart_rate=72)
    assert (await api.send(device, recent)).status_code == 201

    backfilled = partitions.partition_name(two_months_ago)
    oldest = partitions.partition_name(partitions.month_start(older))
    current = partitions.partition_name(partitions.month_start(now()))
    assert await placed(api, device["id"]) == {backfilled: 5, oldest: 1, current: 1}
    # …and in the rollups, by minute and by hour.
    widths = (60, 300, 3600)
    assert await rolled_up(api, device["id"]) == {
        (month.month, width): count
        for month, count in ((two_months_ago, 5), (older, 1), (now(), 1))
        for width in widths
    }

    # Retention of a year drops the oldest month whole, and only it.
    async with api.app.state.runtime.database.writer.begin() as connection:
        _, dropped = await partitions.maintain(
            connection, now=now(), ahead_months=3, retention_days=365
        )
    assert dropped == [oldest]
    assert await placed(api, device["id"]) == {backfilled: 5, current: 1}
    assert set(await rolled_up(api, device["id"])) == {
        (month.month, width) for month in (two_months_ago, now()) for width in widths
    }


async def test_readings_left_in_the_default_partition_are_given_their_months(
    api: Api, alice: str
) -> None:
    device = await api.register_device(alice)
    long_ago = partitions.add_months(partitions.month_start(now()), -30) + dt.timedelta(days=2)
    runtime = api.app.state.runtime
    # As an older release left them: readings of a month without a partition.
    async with runtime.database.writer.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO reading_series (device_id, type, patient_key, organisation_id) "
                "SELECT id, 'heart_rate', '', organisation_id FROM device WHERE id = :device"
            ),
            {"device": device["id"]},
        )
        await connection.execute(
            text(
                'INSERT INTO reading_default ("timestamp", series_id, value) '
                "SELECT :at, id, 70 FROM reading_series WHERE device_id = :device"
            ),
            {"device": device["id"], "at": long_ago},
        )
    async with runtime.database.writer.begin() as connection:
        created, _ = await partitions.maintain(
            connection, now=now(), ahead_months=3, retention_days=0
        )
    name = partitions.partition_name(partitions.month_start(long_ago))
    assert name in created
    assert await placed(api, device["id"]) == {name: 1}
    [kept] = await api.readings(alice, device["id"])
    assert kept["value"] == 70


async def test_a_bulk_load_has_its_partitions_statistics_refreshed(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    month = partitions.add_months(partitions.month_start(now()), -4)
    name = partitions.partition_name(month)
    for part in range(3):  # 12,000 readings, past the first mark
        batch = [
            reading(
                month + dt.timedelta(hours=part, seconds=i),
                heart_rate=70,
                spo2=97,
                respiratory_rate=16,
                temperature=36.8,
            )
            for i in range(1000)
        ]
        assert (await api.send(device, {"readings": batch})).status_code == 201

    async def analysed() -> bool:
        async with api.app.state.runtime.read_sessions() as session:
            found = await session.scalar(
                text("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = :name"),
                {"name": name},
            )
            return found is not None

    assert await eventually(analysed, timeout=30)
