"""Queries on the analytics context's tables. Repositories never commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.analytics.models import TECHNICAL, Alert
from medcloud.platform.db import dialect_name
from medcloud.platform.paging import before


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert


async def insert_new(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert alerts not raised before; return the ids of those inserted."""
    if not rows:
        return set()
    statement = (
        _insert(session)(Alert)
        .on_conflict_do_nothing(
            index_elements=["device_id", "measurement", "reading_timestamp", "rule"]
        )
        .returning(Alert.id)
    )
    result = await session.execute(statement, list(rows))
    return set(result.scalars().all())


async def record_technical(session: AsyncSession, row: dict[str, Any]) -> bool:
    """Insert a technical alert unless its id is known; tell whether it was inserted.

    A known id means a redelivery, or that its resolution came first and recorded it whole.
    """
    statement = (
        _insert(session)(Alert)
        .values(**row, source=TECHNICAL)
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(Alert.id)
    )
    return (await session.execute(statement)).scalar() is not None


async def record_resolved_technical(session: AsyncSession, row: dict[str, Any]) -> None:
    """Insert a technical alert already resolved, or mark the recorded one resolved."""
    insert = _insert(session)
    statement = insert(Alert).values(**row, source=TECHNICAL)
    # Inserting (rather than update-else-insert) makes a concurrent raise of the same alert
    # wait for this one on the primary key, whichever of the two arrives first.
    statement = statement.on_conflict_do_update(
        index_elements=["id"],
        set_={"resolved_at": statement.excluded.resolved_at},
        where=Alert.resolved_at.is_(None),
    )
    await session.execute(statement)


async def resolve_technical(session: AsyncSession, alert_id: str, at: dt.datetime) -> bool:
    """Mark a recorded technical alert resolved; tell whether one was open."""
    result = await session.execute(
        update(Alert)
        .where(Alert.id == alert_id, Alert.source == TECHNICAL, Alert.resolved_at.is_(None))
        .values(resolved_at=at)
        .returning(Alert.id)
    )
    return result.scalar() is not None


async def page(
    session: AsyncSession,
    organisation_id: str,
    *,
    patients: frozenset[str] | None,
    device_id: str | None,
    source: str | None,
    limit: int,
    after: tuple[dt.datetime, str] | None,
) -> Sequence[Alert]:
    """Return an organisation's alerts, newest first, after a (raised_at, id) cursor."""
    query = select(Alert).where(Alert.organisation_id == organisation_id)
    if patients is not None:
        query = query.where(Alert.patient_id.in_(patients))
    if device_id is not None:
        query = query.where(Alert.device_id == device_id)
    if source is not None:
        query = query.where(Alert.source == source)
    if after is not None:
        query = query.where(before(Alert.raised_at, Alert.id, after))
    query = query.order_by(Alert.raised_at.desc(), Alert.id.desc()).limit(limit)
    return (await session.scalars(query)).all()
