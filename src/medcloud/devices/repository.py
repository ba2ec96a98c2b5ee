"""Queries on the devices context's tables; those on firmware and rollouts are in
`rollout_repository.py`. Repositories never commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.devices.models import (
    Device,
    DeviceAlert,
    DeviceAssignment,
    DeviceCredential,
    DeviceModel,
)
from medcloud.platform.directory import DeviceQuery
from medcloud.platform.errors import NotFound
from medcloud.platform.paging import before


async def get(session: AsyncSession, device_id: str) -> Device | None:
    """Return the device, or None."""
    return await session.get(Device, device_id)


async def get_in_organisation(
    session: AsyncSession, organisation_id: str, device_id: str, *, for_update: bool = False
) -> Device | None:
    """Return the organisation's device, or None; `for_update` locks it (PostgreSQL)."""
    query = select(Device).where(Device.id == device_id, Device.organisation_id == organisation_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return await session.scalar(query)


async def lock_in_organisation(
    session: AsyncSession, organisation_id: str, device_id: str
) -> Device:
    """Return the organisation's device locked for a change (PostgreSQL); NotFound otherwise.

    The lock makes concurrent changes of one device (rotations, firmware reports) apply one
    after the other.
    """
    device = await get_in_organisation(session, organisation_id, device_id, for_update=True)
    if device is None:
        raise NotFound("device not found")
    return device


class CredentialMatch(NamedTuple):
    """The device a working token belongs to, and that token's credential."""

    device_id: str
    organisation_id: str
    patient_id: str | None
    credential_id: str
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    patient_since: dt.datetime | None


async def find_working_credential(
    session: AsyncSession, token_hash: str, now: dt.datetime
) -> CredentialMatch | None:
    """Find the device of a token that is neither revoked nor expired at `now`."""
    found = await session.execute(_WORKING_CREDENTIAL, {"token_hash": token_hash, "now": now})
    row = found.first()
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


async def mark_credentials_used(
    session: AsyncSession, uses: Mapping[str, dt.datetime], *, resolution: dt.timedelta
) -> None:
    """Record each credential's use, unless one less than `resolution` older is recorded.

    One statement for all of them, in id order so that concurrent callers lock rows alike.
    """
    table = cast(Table, DeviceCredential.__table__)
    statement = (
        update(table)
        .where(
            table.c.id == bindparam("credential"),
            or_(table.c.last_used_at.is_(None), table.c.last_used_at < bindparam("unless_since")),
        )
        .values(last_used_at=bindparam("used_at"))
    )
    params = [
        {"credential": key, "used_at": uses[key], "unless_since": uses[key] - resolution}
        for key in sorted(uses)
    ]
    if params:
        await session.execute(statement, params)


async def by_serial(
    session: AsyncSession, organisation_id: str, serial_number: str
) -> Device | None:
    """Return the organisation's device with this serial number, or None."""
    return await session.scalar(
        select(Device).where(
            Device.organisation_id == organisation_id, Device.serial_number == serial_number
        )
    )


async def serial_taken(session: AsyncSession, organisation_id: str, serial_number: str) -> bool:
    """Tell whether the organisation already has a device with this serial number."""
    return await by_serial(session, organisation_id, serial_number) is not None


@dataclass(frozen=True)
class DeviceFilter:
    """What a device search narrows to; None means any."""

    status: str | None = None
    model: str | None = None
    model_id: str | None = None
    ward_id: str | None = None
    firmware_version: str | None = None
    patient_id: str | None = None


async def page(
    session: AsyncSession,
    organisation_id: str,
    *,
    patients: frozenset[str] | None = None,
    limit: int,
    after: tuple[dt.datetime, str] | None,
    where: DeviceFilter = DeviceFilter(),
) -> Sequence[Device]:
    """Return up to `limit` devices (of `patients`, if given), newest first, after a cursor."""
    query = select(Device).where(Device.organisation_id == organisation_id)
    if patients is not None:
        query = query.where(Device.patient_id.in_(patients))
    for column, value in (
        (Device.status, where.status),
        (Device.model, where.model),
        (Device.model_id, where.model_id),
        (Device.ward_id, where.ward_id),
        (Device.firmware_version, where.firmware_version),
        (Device.patient_id, where.patient_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if after is not None:
        query = query.where(before(Device.created_at, Device.id, after))
    query = query.order_by(Device.created_at.desc(), Device.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def search(
    session: AsyncSession,
    organisation_id: str,
    query: DeviceQuery,
    *,
    limit: int,
    after: tuple[dt.datetime, str] | None,
) -> Sequence[Device]:
    """Return the organisation's devices matching `query`, newest first, after a cursor.

    A serial number is one probe of the (organisation, serial_number) key; the rest walk the
    (organisation, created_at) index newest first and stop at `limit`.
    """
    statement = select(Device).where(Device.organisation_id == organisation_id)
    if query.serial_number is not None:
        statement = statement.where(Device.serial_number == query.serial_number)
    if query.patient_id is not None:
        statement = statement.where(Device.patient_id == query.patient_id)
    for ids, column in ((query.ids, Device.id), (query.patients, Device.patient_id)):
        if ids is not None:
            statement = statement.where(column.in_(ids))
    if after is not None:
        statement = statement.where(before(Device.created_at, Device.id, after))
    statement = statement.order_by(Device.created_at.desc(), Device.id.desc()).limit(limit)
    return (await session.scalars(statement)).all()


async def touch(session: AsyncSession, seen: Mapping[str, dt.datetime]) -> None:
    """Move devices' last-seen times forward (never back, readings arrive out of order).

    One statement for all of them, in id order so that concurrent callers lock rows alike.
    """
    table = cast(Table, Device.__table__)
    statement = (
        update(table)
        .where(
            table.c.id == bindparam("device"),
            or_(table.c.last_seen_at.is_(None), table.c.last_seen_at < bindparam("seen")),
        )
        .values(last_seen_at=bindparam("seen"))
    )
    params = [{"device": device_id, "seen": seen[device_id]} for device_id in sorted(seen)]
    if params:
        await session.execute(statement, params)


async def not_online(session: AsyncSession, device_ids: Collection[str]) -> Sequence[Device]:
    """Return those of the devices whose status says they are not (or not yet) online."""
    query = select(Device).where(
        Device.id.in_(sorted(device_ids)), Device.status.in_(("unknown", "offline"))
    )
    return (await session.scalars(query)).all()


async def count_seen_since(session: AsyncSession, since: dt.datetime) -> int:
    """Count devices seen at or after `since`."""
    query = select(func.count()).select_from(Device).where(Device.last_seen_at >= since)
    return int(await session.scalar(query) or 0)


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    """Count devices per status, across organisations (for the gauges)."""
    rows = await session.execute(select(Device.status, func.count()).group_by(Device.status))
    return {status: int(count) for status, count in rows.all()}


async def online_with_interval(session: AsyncSession) -> Sequence[tuple[Device, float | None]]:
    """Return online devices with their model's reporting interval (None: no model)."""
    query = (
        select(Device, DeviceModel.reporting_interval_seconds)
        .outerjoin(DeviceModel, DeviceModel.id == Device.model_id)
        .where(Device.status == "online")
        # Two monitors running side by side each take the devices the other has not locked.
        .with_for_update(of=Device, skip_locked=True)
    )
    return [(device, interval) for device, interval in (await session.execute(query)).all()]


async def get_model(
    session: AsyncSession, organisation_id: str, model_id: str
) -> DeviceModel | None:
    """Return the organisation's device model, or None."""
    return await session.scalar(
        select(DeviceModel).where(
            DeviceModel.id == model_id, DeviceModel.organisation_id == organisation_id
        )
    )


async def find_model(
    session: AsyncSession, organisation_id: str, manufacturer: str, model: str
) -> DeviceModel | None:
    """Return the organisation's profile of this manufacturer's model, or None."""
    return await session.scalar(
        select(DeviceModel).where(
            DeviceModel.organisation_id == organisation_id,
            DeviceModel.manufacturer == manufacturer,
            DeviceModel.model == model,
        )
    )


async def models(session: AsyncSession, organisation_id: str) -> Sequence[DeviceModel]:
    """Return the organisation's device models by manufacturer and name."""
    query = (
        select(DeviceModel)
        .where(DeviceModel.organisation_id == organisation_id)
        .order_by(DeviceModel.manufacturer, DeviceModel.model)
    )
    return (await session.scalars(query)).all()


async def adopt_devices(session: AsyncSession, model: DeviceModel) -> None:
    """Link the organisation's devices that name this model but no profile yet to it."""
    await session.execute(
        update(Device)
        .where(
            Device.organisation_id == model.organisation_id,
            Device.manufacturer == model.manufacturer,
            Device.model == model.model,
            Device.model_id.is_(None),
        )
        .values(model_id=model.id)
    )


def _last_assignment_change(device_id: Any) -> Any:
    """The latest start or end among a device's assignments, as a scalar subquery."""
    # An open assignment's start is later than every earlier end, so the latest of
    # coalesce(end, start) is when the device's current patient (or lack of one) began.
    return (
        select(func.max(func.coalesce(DeviceAssignment.ended_at, DeviceAssignment.started_at)))
        .where(DeviceAssignment.device_id == device_id)
        .scalar_subquery()
    )


# Built once: every request of a device whose token is not cached asks it, and composing the
# statement (and its cache key) anew each time cost more than running it.
_WORKING_CREDENTIAL = (
    select(
        Device.id,
        Device.organisation_id,
        Device.patient_id,
        DeviceCredential.id,
        DeviceCredential.expires_at,
        DeviceCredential.last_used_at,
        _last_assignment_change(Device.id),
    )
    .join(DeviceCredential, DeviceCredential.device_id == Device.id)
    .where(
        DeviceCredential.token_hash == bindparam("token_hash"),
        DeviceCredential.revoked_at.is_(None),
        or_(
            DeviceCredential.expires_at.is_(None),
            DeviceCredential.expires_at > bindparam("now"),
        ),
    )
)


# Built once, like `_WORKING_CREDENTIAL`: every read of a device's readings asks it first.
_REFERENCE = select(
    Device.id,
    Device.organisation_id,
    Device.patient_id,
    Device.status,
    _last_assignment_change(Device.id),
).where(Device.id == bindparam("device_id"))


async def reference(
    session: AsyncSession, device_id: str
) -> tuple[str, str, str | None, str, dt.datetime | None] | None:
    """Return (id, organisation, patient, status, last assignment change) of the device, or
    None: what other contexts know of it, in one statement."""
    row = (await session.execute(_REFERENCE, {"device_id": device_id})).first()
    return None if row is None else (row[0], row[1], row[2], row[3], row[4])


async def last_assignment_change(session: AsyncSession, device_id: str) -> dt.datetime | None:
    """Return when the device's assignment last changed, or None if it never had one."""
    found: dt.datetime | None = await session.scalar(select(_last_assignment_change(device_id)))
    return found


async def current_assignment(session: AsyncSession, device_id: str) -> DeviceAssignment | None:
    """Return the device's open assignment, or None."""
    return await session.scalar(
        select(DeviceAssignment).where(
            DeviceAssignment.device_id == device_id, DeviceAssignment.ended_at.is_(None)
        )
    )


async def assignments(session: AsyncSession, device_id: str) -> Sequence[DeviceAssignment]:
    """Return the device's assignments, newest first."""
    query = (
        select(DeviceAssignment)
        .where(DeviceAssignment.device_id == device_id)
        .order_by(DeviceAssignment.started_at.desc(), DeviceAssignment.id.desc())
    )
    return (await session.scalars(query)).all()


async def open_alert(session: AsyncSession, device_id: str, kind: str) -> DeviceAlert | None:
    """Return the device's unresolved alert of this kind, or None."""
    return await session.scalar(
        select(DeviceAlert).where(
            DeviceAlert.device_id == device_id,
            DeviceAlert.kind == kind,
            DeviceAlert.resolved_at.is_(None),
        )
    )


async def open_alerts(
    session: AsyncSession, device_ids: Collection[str], kind: str
) -> dict[str, DeviceAlert]:
    """Return the unresolved alert of this kind of each device that has one."""
    rows = await session.scalars(
        select(DeviceAlert).where(
            DeviceAlert.device_id.in_(sorted(device_ids)),
            DeviceAlert.kind == kind,
            DeviceAlert.resolved_at.is_(None),
        )
    )
    return {alert.device_id: alert for alert in rows}


async def alerts_page(
    session: AsyncSession,
    organisation_id: str,
    *,
    patients: frozenset[str] | None,
    device_id: str | None,
    open_only: bool,
    limit: int,
    after: tuple[dt.datetime, str] | None,
) -> Sequence[DeviceAlert]:
    """Return technical alerts, newest first, after a (raised_at, id) cursor."""
    query = select(DeviceAlert).where(DeviceAlert.organisation_id == organisation_id)
    if patients is not None:
        query = query.where(DeviceAlert.patient_id.in_(patients))
    if device_id is not None:
        query = query.where(DeviceAlert.device_id == device_id)
    if open_only:
        query = query.where(DeviceAlert.resolved_at.is_(None))
    if after is not None:
        raised_at, alert_id = after
        query = query.where(
            or_(
                DeviceAlert.raised_at < raised_at,
                and_(DeviceAlert.raised_at == raised_at, DeviceAlert.id < alert_id),
            )
        )
    query = query.order_by(DeviceAlert.raised_at.desc(), DeviceAlert.id.desc()).limit(limit)
    return (await session.scalars(query)).all()
