"""Queries over the interoperability context's tables. Never commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.interop.models import Interface, ProcessedMessage


async def interfaces(
    session: AsyncSession, organisation_id: str | None = None
) -> Sequence[Interface]:
    """Return the interfaces (of one organisation, or of all), oldest first."""
    query = select(Interface).order_by(Interface.created_at, Interface.id)
    if organisation_id is not None:
        query = query.where(Interface.organisation_id == organisation_id)
    return (await session.scalars(query)).all()


async def interface_named(
    session: AsyncSession, organisation_id: str, name: str
) -> Interface | None:
    """Return the organisation's interface of this name, or None."""
    return await session.scalar(
        select(Interface).where(
            Interface.organisation_id == organisation_id, Interface.name == name
        )
    )


async def interface(session: AsyncSession, interface_id: str) -> Interface | None:
    """Return the interface, whichever its organisation, or None."""
    return await session.get(Interface, interface_id)


async def forget_processed(session: AsyncSession, before: dt.datetime) -> int:
    """Delete the records of messages answered before `before`; return how many."""
    result = await session.execute(
        delete(ProcessedMessage).where(ProcessedMessage.received_at < before)
    )
    return int(getattr(result, "rowcount", 0) or 0)
