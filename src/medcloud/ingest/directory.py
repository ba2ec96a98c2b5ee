"""The ingest context's published interface: stored readings, read back by other contexts."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.ingest.models import Reading

MAX_SERIES_POINTS = 200_000
"""A series is cut here: a week of one vital at 1 Hz is 604,800 readings, more than any
forecast or training window needs in one piece."""


class SqlReadingHistory:
    """Read readings from the readings store."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def series(
        self, patient_id: str, measurement: str, start: dt.datetime, end: dt.datetime
    ) -> list[tuple[dt.datetime, float]]:
        """Return the patient's readings of one type in [start, end), oldest first."""
        query = (
            select(Reading.timestamp, Reading.value)
            .where(
                Reading.patient_id == patient_id,
                Reading.type == measurement,
                Reading.timestamp >= start,
                Reading.timestamp < end,
            )
            .order_by(Reading.timestamp)
            .limit(MAX_SERIES_POINTS)
        )
        async with self._sessions() as session:
            rows = await session.execute(query)
            return [(timestamp, value) for timestamp, value in rows.all()]

    async def patients(
        self, organisation_id: str | None, start: dt.datetime, end: dt.datetime
    ) -> list[str]:
        """Return the patients with readings in [start, end) (None: of every organisation)."""
        query = (
            select(Reading.patient_id)
            .where(
                Reading.patient_id.is_not(None),
                Reading.timestamp >= start,
                Reading.timestamp < end,
            )
            .distinct()
        )
        if organisation_id is not None:
            query = query.where(Reading.organisation_id == organisation_id)
        async with self._sessions() as session:
            return [p for p in (await session.scalars(query)).all() if p is not None]
