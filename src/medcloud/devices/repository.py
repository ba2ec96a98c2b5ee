"""Queries on the devices context's tables. Repositories never commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.devices.models import Device


async def get(session: AsyncSession, device_id: str) -> Device | None:
    """Return the device, or None."""
    return await session.get(Device, device_id)


async def get_by_token_hash(session: AsyncSession, token_hash: str) -> Device | None:
    """Return the device holding this token, or None."""
    return await session.scalar(select(Device).where(Device.token_hash == token_hash))


async def serial_taken(session: AsyncSession, organisation_id: str, serial_number: str) -> bool:
    """Tell whether the organisation already has a device with this serial number."""
    found = await session.scalar(
        select(Device.id).where(
            Device.organisation_id == organisation_id, Device.serial_number == serial_number
        )
    )
    return found is not None


async def page(
    session: AsyncSession,
    organisation_id: str,
    *,
    limit: int,
    after: tuple[dt.datetime, str] | None,
) -> Sequence[Device]:
    """Return up to `limit` devices, newest first, after a (created_at, id) keyset cursor."""
    query = select(Device).where(Device.organisation_id == organisation_id)
    if after is not None:
        created_at, device_id = after
        query = query.where(
            or_(
                Device.created_at < created_at,
                and_(Device.created_at == created_at, Device.id < device_id),
            )
        )
    query = query.order_by(Device.created_at.desc(), Device.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def touch(session: AsyncSession, device_id: str, seen_at: dt.datetime) -> None:
    """Move the device's last-seen time forward (never back, readings arrive out of order)."""
    await session.execute(
        update(Device)
        .where(
            Device.id == device_id,
            or_(Device.last_seen_at.is_(None), Device.last_seen_at < seen_at),
        )
        .values(last_seen_at=seen_at)
    )


async def count_seen_since(session: AsyncSession, since: dt.datetime) -> int:
    """Count devices seen at or after `since`."""
    query = select(func.count()).select_from(Device).where(Device.last_seen_at >= since)
    return int(await session.scalar(query) or 0)
