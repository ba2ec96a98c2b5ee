"""On PostgreSQL the readings live in monthly partitions, made ahead and dropped when expired."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from medcloud.ingest import partitions
from tests.support.client import Api, now, reading

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


async def test_expired_partitions_are_dropped_and_old_strays_deleted(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    long_ago = now() - dt.timedelta(days=800)
    runtime = api.app.state.runtime
    async with runtime.database.writer.begin() as connection:
        await partitions.maintain(connection, now=long_ago, ahead_months=0, retention_days=0)
    old_partition = partitions.partition_name(partitions.month_start(long_ago))
    assert old_partition in await names(api)
    stray = long_ago - dt.timedelta(days=100)  # no partition of its own: the default one
    batch = {"readings": [reading(long_ago, heart_rate=70), reading(stray, heart_rate=71)]}
    assert (await api.send(device, batch)).status_code == 201
    recent = reading(now() - dt.timedelta(seconds=5), heart_rate=72)
    assert (await api.send(device, recent)).status_code == 201

    async with runtime.database.writer.begin() as connection:
        _, dropped = await partitions.maintain(
            connection, now=now(), ahead_months=3, retention_days=365
        )
    assert old_partition in dropped
    assert [i["value"] for i in await api.readings(alice, device["id"])] == [72.0]
