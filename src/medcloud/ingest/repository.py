"""Queries on the ingest context's tables. Repositories never commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.ingest.models import Reading
from medcloud.platform.db import dialect_name


async def insert_new(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> list[tuple[str, float, dt.datetime]]:
    """Insert readings, skipping any already stored; return (type, value, timestamp) of new ones."""
    insert = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
    statement = (
        insert(Reading)
        .on_conflict_do_nothing(index_elements=["device_id", "type", "timestamp"])
        .returning(Reading.type, Reading.value, Reading.timestamp)
    )
    result = await session.execute(statement, list(rows))
    return [(t, v, ts) for t, v, ts in result.all()]


async def page(
    session: AsyncSession,
    device_id: str,
    *,
    patients: frozenset[str] | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    limit: int,
    after: tuple[dt.datetime, int] | None,
) -> Sequence[Reading]:
    """Return a device's readings in [start, end), newest first, after a (timestamp, id) cursor."""
    query = select(Reading).where(Reading.device_id == device_id)
    if patients is not None:
        query = query.where(Reading.patient_id.in_(patients))
    if start is not None:
        query = query.where(Reading.timestamp >= start)
    if end is not None:
        query = query.where(Reading.timestamp < end)
    if after is not None:
        timestamp, reading_id = after
        query = query.where(
            or_(
                Reading.timestamp < timestamp,
                and_(Reading.timestamp == timestamp, Reading.id < reading_id),
            )
        )
    query = query.order_by(Reading.timestamp.desc(), Reading.id.desc()).limit(limit)
    return (await session.scalars(query)).all()
