"""Queries on the devices context's tables. Repositories never commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.devices.models import Device, DeviceCredential


async def get(session: AsyncSession, device_id: str) -> Device | None:
    """Return the device, or None."""
    return await session.get(Device, device_id)


async def get_in_organisation(
    session: AsyncSession, organisation_id: str, device_id: str, *, for_update: bool = False
) -> Device | None:
    """Return the organisation's device, or None; `for_update` locks it (PostgreSQL)."""
    query = select(Device).where(Device.id == device_id, Device.organisation_id == organisation_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


class CredentialMatch(NamedTuple):
    """The device a working token belongs to, and that token's credential."""

    device_id: str
    organisation_id: str
    patient_id: str | None
    credential_id: str
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None


async def find_working_credential(
    session: AsyncSession, token_hash: str, now: dt.datetime
) -> CredentialMatch | None:
    """Find the device of a token that is neither revoked nor expired at `now`."""
    query = (
        select(
            Device.id,
            Device.organisation_id,
            Device.patient_id,
            DeviceCredential.id,
            DeviceCredential.expires_at,
            DeviceCredential.last_used_at,
        )
        .join(DeviceCredential, DeviceCredential.device_id == Device.id)
        .where(
            DeviceCredential.token_hash == token_hash,
            DeviceCredential.revoked_at.is_(None),
            or_(DeviceCredential.expires_at.is_(None), DeviceCredential.expires_at > now),
        )
    )
    row = (await session.execute(query)).first()
    return None if row is None else CredentialMatch(*row)


async def credentials(
    session: AsyncSession, organisation_id: str, device_id: str
) -> Sequence[DeviceCredential]:
    """Return the credentials of the organisation's device, newest first."""
    query = (
        select(DeviceCredential)
        .join(Device, Device.id == DeviceCredential.device_id)
        .where(Device.id == device_id, Device.organisation_id == organisation_id)
        .order_by(DeviceCredential.created_at.desc(), DeviceCredential.id.desc())
    )
    return (await session.scalars(query)).all()


async def mark_credential_used(
    session: AsyncSession, credential_id: str, used_at: dt.datetime, *, unless_since: dt.datetime
) -> None:
    """Record a use, unless one at or after `unless_since` is already recorded."""
    await session.execute(
        update(DeviceCredential)
        .where(
            DeviceCredential.id == credential_id,
            or_(
                DeviceCredential.last_used_at.is_(None),
                DeviceCredential.last_used_at < unless_since,
            ),
        )
        .values(last_used_at=used_at)
    )


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
    patients: frozenset[str] | None = None,
    limit: int,
    after: tuple[dt.datetime, str] | None,
) -> Sequence[Device]:
    """Return up to `limit` devices (of `patients`, if given), newest first, after a cursor."""
    query = select(Device).where(Device.organisation_id == organisation_id)
    if patients is not None:
        query = query.where(Device.patient_id.in_(patients))
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
