"""Queries on the analytics context's tables. Repositories never commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.analytics.models import Alert
from medcloud.platform.db import dialect_name
from medcloud.platform.paging import before


async def insert_new(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert alerts not raised before; return the ids of those inserted."""
    if not rows:
        return set()
    insert = postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert
    statement = (
        insert(Alert)
        .on_conflict_do_nothing(
            index_elements=["device_id", "measurement", "reading_timestamp", "rule"]
        )
        .returning(Alert.id)
    )
    result = await session.execute(statement, list(rows))
    return set(result.scalars().all())


async def page(
    session: AsyncSession,
    organisation_id: str,
    *,
    patients: frozenset[str] | None,
    device_id: str | None,
    limit: int,
    after: tuple[dt.datetime, str] | None,
) -> Sequence[Alert]:
    """Return an organisation's alerts, newest first, after a (raised_at, id) cursor."""
    query = select(Alert).where(Alert.organisation_id == organisation_id)
    if patients is not None:
        query = query.where(Alert.patient_id.in_(patients))
    if device_id is not None:
        query = query.where(Alert.device_id == device_id)
    if after is not None:
        query = query.where(before(Alert.raised_at, Alert.id, after))
    query = query.order_by(Alert.raised_at.desc(), Alert.id.desc()).limit(limit)
    return (await session.scalars(query)).all()
