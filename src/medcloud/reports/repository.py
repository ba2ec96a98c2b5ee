"""Queries of the reports context. Nothing here commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import ColumnElement, and_, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.platform.db import upsert
from medcloud.platform.paging import before
from medcloud.reports.models import Report, ReportWatermark

DAILY = "daily"
"""The watermark of the daily run."""


async def get(session: AsyncSession, report_id: str) -> Report | None:
    """Return the report, or None."""
    return await session.get(Report, report_id)


async def by_daily_key(session: AsyncSession, daily_key: str) -> Report | None:
    """Return the scheduled report with this key, or None."""
    return (await session.scalars(select(Report).where(Report.daily_key == daily_key))).first()


def visible(
    whole_organisation: bool, wards: frozenset[str], patients: frozenset[str]
) -> ColumnElement[bool]:
    """Select the reports a user may read: all of them, or those of their wards and patients."""
    if whole_organisation:
        return ~false()
    return or_(
        and_(Report.scope == "ward", Report.ward_id.in_(wards)) if wards else false(),
        and_(Report.scope == "patient", Report.patient_id.in_(patients)) if patients else false(),
    )


async def page(
    session: AsyncSession,
    organisation_id: str,
    *,
    allowed: ColumnElement[bool],
    scope: str | None,
    ward_id: str | None,
    patient_id: str | None,
    after: tuple[dt.datetime, str] | None,
    limit: int,
) -> Sequence[Report]:
    """Return up to `limit` reports newest first, after a (generated_at, id) position."""
    query = select(Report).where(Report.organisation_id == organisation_id, allowed)
    if scope is not None:
        query = query.where(Report.scope == scope)
    if ward_id is not None:
        query = query.where(Report.ward_id == ward_id)
    if patient_id is not None:
        query = query.where(Report.patient_id == patient_id)
    if after is not None:
        query = query.where(before(Report.generated_at, Report.id, after))
    query = query.order_by(Report.generated_at.desc(), Report.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def watermark(session: AsyncSession) -> dt.date | None:
    """Return the last day the daily run completed, or None before its first."""
    row = await session.get(ReportWatermark, DAILY)
    return row.day if row is not None else None


async def advance_watermark(session: AsyncSession, day: dt.date, now: dt.datetime) -> None:
    """Record that the daily run completed `day`, unless a later day is recorded already."""
    statement = upsert(session)(ReportWatermark).values(name=DAILY, day=day, updated_at=now)
    statement = statement.on_conflict_do_update(
        index_elements=[ReportWatermark.name],
        set_={"day": day, "updated_at": now},
        where=ReportWatermark.day < day,
    )
    await session.execute(statement)
