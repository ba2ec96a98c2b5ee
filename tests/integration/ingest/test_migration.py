"""ingest_0004 converts wide readings into narrow ones named by series, and rebuilds the rollups."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.config import Settings
from medcloud.ingest import repository, rollups
from medcloud.platform.db import UTCDateTime, create_database
from medcloud.platform.migrate import migrate
from tests.integration.devices.test_migration import locations, run

# The reading table as ingest_0003 left it.
wide_reading = sa.table(
    "reading",
    sa.column("organisation_id", sa.String(36)),
    sa.column("device_id", sa.String(36)),
    sa.column("patient_id", sa.String(64)),
    sa.column("type", sa.String(40)),
    sa.column("value", sa.Float()),
    sa.column("unit", sa.String(20)),
    sa.column("timestamp", UTCDateTime()),
    sa.column("received_at", UTCDateTime()),
    sa.column("clock_drift", sa.Boolean()),
)
AT = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.UTC)


def wide(
    device: str, patient: str | None, code: str, value: float, seconds: int
) -> dict[str, object]:
    taken = AT + dt.timedelta(seconds=seconds)
    drifted = seconds == 0  # the first one arrived two days late
    return {
        "organisation_id": "org-1",
        "device_id": device,
        "patient_id": patient,
        "type": code,
        "value": value,
        "unit": "x",
        "timestamp": taken,
        "received_at": taken + dt.timedelta(days=2 if drifted else 0, seconds=1),
        "clock_drift": drifted,
    }


@pytest.mark.empty_database  # migrates up from ingest_0003 itself
async def test_stored_readings_are_converted_with_their_series_values_drift_and_rollups(
    settings: Settings,
) -> None:
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    database = create_database(settings.resolved_database_url)
    rows = [
        *(wide("dev-a", "pat-1", "temperature", 38.1, s) for s in range(0, 120, 10)),
        *(wide("dev-a", "pat-1", "heart_rate", 70 + s, s) for s in range(0, 120, 10)),
        *(wide("dev-b", None, "heart_rate", 55, s) for s in range(0, 60, 30)),
    ]
    try:
        await run(database, command.upgrade, "ingest_0003")
        async with database.writer.begin() as connection:
            await connection.execute(sa.insert(wide_reading), rows)
        await migrate(database, locations())
        async with database.reader.connect() as connection:
            series = (
                await connection.execute(
                    sa.text(
                        "SELECT device_id, type, patient_key, organisation_id "
                        "FROM reading_series ORDER BY 1, 2"
                    )
                )
            ).all()
            readings = await connection.scalar(sa.text("SELECT count(*) FROM reading"))
            counted: dict[int, int] = dict(
                (
                    await connection.execute(
                        sa.text("SELECT width, sum(count) FROM reading_rollup GROUP BY width")
                    )
                ).all()
            )
        assert [tuple(s) for s in series] == [
            ("dev-a", "heart_rate", "pat-1", "org-1"),
            ("dev-a", "temperature", "pat-1", "org-1"),
            ("dev-b", "heart_rate", "", "org-1"),
        ]
        assert readings == len(rows)
        assert counted == {60: len(rows), 300: len(rows), 3600: len(rows)}

        async with database.reader.connect() as connection:
            session = AsyncSession(bind=connection)
            of_a = await repository.device_series(session, "dev-a", frozenset({"pat-1"}))
            page = await repository.page(session, of_a, start=None, end=None, limit=100, after=None)
            chart = await rollups.buckets(
                session, of_a, start=AT, end=AT + dt.timedelta(hours=1), bucket_seconds=3600
            )
            await session.close()
    finally:
        await database.dispose()

    assert len(page) == 24
    temperatures = [r for r in page if r.type == "temperature"]
    assert {r.value for r in temperatures} == {38.1}  # float32, read back as sent
    assert [r.clock_drift for r in page if r.timestamp == AT] == [True, True]
    assert {r.drift_seconds for r in page if r.timestamp == AT} == {2 * 86_400 + 1}
    assert not any(r.clock_drift for r in page if r.timestamp != AT)
    assert all(r.unit for r in page)
    assert {(code, low, high, count) for code, _n, low, high, _avg, count in chart} == {
        ("heart_rate", 70.0, 180.0, 12),
        ("temperature", 38.1, 38.1, 12),
    }
