"""Use cases of the devices context."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.config import Settings
from medcloud.devices import repository
from medcloud.devices.events import DeviceRegistered as DeviceRegisteredEvent
from medcloud.devices.models import Device
from medcloud.devices.schemas import DeviceCreate, DevicePage, DeviceRead, DeviceRegistered
from medcloud.platform.clock import Clock
from medcloud.platform.errors import Conflict, FieldError, NotFound
from medcloud.platform.metrics import Metrics
from medcloud.platform.paging import decode_cursor, encode_cursor
from medcloud.platform.security import UserPrincipal, hash_device_token, new_device_token
from medcloud.platform.uow import UnitOfWork


async def register_device(
    *, uow: UnitOfWork, principal: UserPrincipal, cmd: DeviceCreate
) -> DeviceRegistered:
    """Register a device in the principal's organisation and issue its token."""
    token = new_device_token()
    async with uow:
        if await repository.serial_taken(uow.session, principal.organisation_id, cmd.serial_number):
            raise Conflict(
                "a device with this serial number is already registered",
                errors=[FieldError("serial_number", "already registered")],
            )
        device = Device(
            id=str(uuid.uuid4()),
            organisation_id=principal.organisation_id,
            serial_number=cmd.serial_number,
            model=cmd.model,
            manufacturer=cmd.manufacturer,
            patient_id=cmd.patient_id,
            token_hash=hash_device_token(token),
            created_at=uow.clock.now(),
            last_seen_at=None,
        )
        uow.session.add(device)
        uow.publish(
            DeviceRegisteredEvent(
                organisation_id=device.organisation_id,
                device_id=device.id,
                serial_number=device.serial_number,
                model=device.model,
                manufacturer=device.manufacturer,
                patient_id=device.patient_id,
            )
        )
        await uow.commit()
    return DeviceRegistered(**_read(device).model_dump(), token=token)


async def get_device(
    *, session: AsyncSession, principal: UserPrincipal, device_id: str
) -> DeviceRead:
    """Return a device of the principal's organisation."""
    device = await repository.get(session, device_id)
    if device is None or device.organisation_id != principal.organisation_id:
        raise NotFound("device not found")
    return _read(device)


async def list_devices(
    *, session: AsyncSession, principal: UserPrincipal, limit: int, cursor: str | None
) -> DevicePage:
    """Return one page of the organisation's devices, newest first."""
    after = decode_cursor(cursor) if cursor else None
    devices = await repository.page(
        session, principal.organisation_id, limit=limit + 1, after=after
    )
    items = [_read(device) for device in devices[:limit]]
    next_cursor = None
    if len(devices) > limit:
        last = devices[limit - 1]
        next_cursor = encode_cursor(last.created_at, last.id)
    return DevicePage(items=items, next_cursor=next_cursor)


async def record_activity(*, uow: UnitOfWork, device_id: str, seen_at: dt.datetime) -> None:
    """Note that a device was heard from."""
    await repository.touch(uow.session, device_id, seen_at)


async def refresh_active_devices(
    *,
    read_sessions: async_sessionmaker[AsyncSession],
    metrics: Metrics,
    clock: Clock,
    settings: Settings,
    stop: asyncio.Event,
    interval_seconds: float = 5.0,
) -> None:
    """Keep the `active_devices_total` gauge current until `stop` is set."""
    window = dt.timedelta(seconds=settings.active_device_window_seconds)
    while not stop.is_set():
        async with read_sessions() as session:
            count = await repository.count_seen_since(session, clock.now() - window)
        metrics.active_devices.set(count)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_seconds)


def _read(device: Device) -> DeviceRead:
    return DeviceRead(
        id=device.id,
        serial_number=device.serial_number,
        model=device.model,
        manufacturer=device.manufacturer,
        patient_id=device.patient_id,
        created_at=device.created_at,
        last_seen_at=device.last_seen_at,
    )
