"""The ingest context's published interface: stored readings, read back by other contexts."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.ingest import repository, rollups
from medcloud.ingest.models import QuarantinedReading, Reading, ReadingSeries
from medcloud.ingest.repository import in_time_order
from medcloud.platform.directory import ReadingBucket, ReadingQuery, StoredReading

MAX_SERIES_POINTS = 200_000
"""A series is cut here: a week of one vital at 1 Hz is 604,800 readings, more than any
forecast or training window needs in one piece."""


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class SqlReadingHistory:
    """Read readings from the readings store."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def series(
        self, patient_id: str, measurement: str, start: dt.datetime, end: dt.datetime
    ) -> list[tuple[dt.datetime, float]]:
        """Return the patient's readings of one type in [start, end), oldest first (from every
        device that took them)."""
        of_patient = select(ReadingSeries.id).where(
            ReadingSeries.patient_key == patient_id, ReadingSeries.type == measurement
        )
        async with self._sessions() as session:
            series_ids = list((await session.scalars(of_patient)).all())
            if not series_ids:
                return []
            query = in_time_order(
                series_ids,
                limit=MAX_SERIES_POINTS,
                newest_first=False,
                where=lambda _series_id: (Reading.timestamp >= start, Reading.timestamp < end),
            )
            rows = await session.execute(query)
            return [(timestamp, value) for _series, timestamp, value, _drift in rows.all()]

    async def patients(
        self, organisation_id: str | None, start: dt.datetime, end: dt.datetime
    ) -> list[str]:
        """Return the patients with readings in [start, end) (None: of every organisation)."""
        has_readings = exists().where(
            Reading.series_id == ReadingSeries.id,
            Reading.timestamp >= start,
            Reading.timestamp < end,
        )
        query = (
            select(ReadingSeries.patient_key)
            .where(ReadingSeries.patient_key != "", has_readings)
            .distinct()
        )
        if organisation_id is not None:
            query = query.where(ReadingSeries.organisation_id == organisation_id)
        async with self._sessions() as session:
            return list((await session.scalars(query)).all())

    async def page(
        self, query: ReadingQuery, *, newest_first: bool, limit: int
    ) -> list[StoredReading]:
        """Return up to `limit` readings matching `query` in time order (ties: in a fixed order
        of their series)."""
        async with self._sessions() as session:
            series = await repository.series_named(session, query)
            rows = await repository.in_range(
                session,
                list(series),
                start=query.start,
                end=query.end,
                newest_first=newest_first,
                limit=limit,
            )
        return [_stored(series[series_id], at, value) for series_id, at, value in rows]

    async def latest(self, query: ReadingQuery, *, per_type: int) -> list[StoredReading]:
        """Return the newest `per_type` readings of each type matching `query` (from whichever
        device took them), newest first."""
        async with self._sessions() as session:
            series = await repository.series_named(session, query)
            rows = await repository.newest_of_each(
                session, list(series), per_series=per_type, start=query.start, end=query.end
            )
        by_type: dict[str, list[StoredReading]] = {}
        for series_id, at, value in rows:
            reading = _stored(series[series_id], at, value)
            by_type.setdefault(reading.type, []).append(reading)
        newest = [
            reading
            for readings in by_type.values()
            for reading in sorted(readings, key=lambda r: r.at, reverse=True)[:per_type]
        ]
        return sorted(newest, key=lambda r: (r.at, r.type, r.device_id), reverse=True)

    async def types_measured(self, device_id: str) -> list[str]:
        """Return the types of reading the device has sent, sorted."""
        async with self._sessions() as session:
            return await repository.device_types(session, device_id)

    async def buckets(self, query: ReadingQuery, *, bucket_seconds: int) -> list[ReadingBucket]:
        """Return each type's readings matching `query` folded into buckets of `bucket_seconds`
        from the epoch, oldest first, from the chart rollups where they tile the range."""
        if query.start is None or query.end is None:
            raise ValueError("buckets are read between a start and an end")
        async with self._sessions() as session:
            series = await repository.series_named(session, query)
            found = await rollups.buckets(
                session,
                {series_id: name.type for series_id, name in series.items()},
                start=query.start,
                end=query.end,
                bucket_seconds=bucket_seconds,
            )
        return sorted(
            (
                ReadingBucket(
                    kind, EPOCH + dt.timedelta(seconds=number * bucket_seconds), low, high, mean, n
                )
                for kind, number, low, high, mean, n in found
            ),
            key=lambda bucket: (bucket.start, bucket.type),
        )

    async def rejections(
        self,
        organisation_id: str,
        start: dt.datetime,
        end: dt.datetime,
        patients: frozenset[str] | None,
    ) -> dict[str, int]:
        """Count what the gate refused in [start, end), by the measurement type (or the part of
        the message) refused."""
        query = (
            select(QuarantinedReading.field, func.count())
            .where(
                QuarantinedReading.organisation_id == organisation_id,
                QuarantinedReading.received_at >= start,
                QuarantinedReading.received_at < end,
            )
            .group_by(QuarantinedReading.field)
        )
        if patients is not None:
            query = query.where(QuarantinedReading.patient_id.in_(patients))
        counts: dict[str, int] = {}
        async with self._sessions() as session:
            for field, count in (await session.execute(query)).all():
                # "readings.3.measurements.spo2" names spo2; "body" the message itself.
                what = field.rsplit(".", 1)[-1]
                counts[what] = counts.get(what, 0) + count
        return dict(sorted(counts.items()))


def _stored(name: repository.SeriesName, at: dt.datetime, value: float) -> StoredReading:
    return StoredReading(name.device_id, name.type, at, value, name.patient_id)
