"""Use cases of the devices context."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.config import Settings
from medcloud.devices import repository
from medcloud.devices.events import DeviceRegistered as DeviceRegisteredEvent
from medcloud.devices.models import Device, DeviceCredential
from medcloud.devices.schemas import (
    CredentialIssued,
    CredentialList,
    CredentialRead,
    CredentialRotate,
    DeviceCreate,
    DevicePage,
    DeviceRead,
    DeviceRegistered,
)
from medcloud.platform.audit import audit_record
from medcloud.platform.cache import Cache
from medcloud.platform.clock import Clock
from medcloud.platform.directory import CareDirectory, PatientDirectory
from medcloud.platform.errors import Conflict, FieldError, Invalid, NotFound, OutOfScope
from medcloud.platform.metrics import Metrics
from medcloud.platform.paging import decode_cursor, encode_cursor
from medcloud.platform.security import (
    Role,
    UserPrincipal,
    device_cache_key,
    hash_device_token,
    new_device_token,
)
from medcloud.platform.uow import UnitOfWork


async def register_device(
    *, uow: UnitOfWork, patients: PatientDirectory, principal: UserPrincipal, cmd: DeviceCreate
) -> DeviceRegistered:
    """Register a device in the principal's organisation and issue its first token."""
    token = new_device_token()
    if cmd.patient_id is not None:
        patient = await patients.get(cmd.patient_id)
        if patient is None or patient.organisation_id != principal.organisation_id:
            raise Invalid(
                "the device cannot be assigned to that patient",
                errors=[FieldError("patient_id", "no such patient")],
            )
    async with uow:
        if await repository.serial_taken(uow.session, principal.organisation_id, cmd.serial_number):
            raise Conflict(
                "a device with this serial number is already registered",
                errors=[FieldError("serial_number", "already registered")],
            )
        now = uow.clock.now()
        device = Device(
            id=str(uuid.uuid4()),
            organisation_id=principal.organisation_id,
            serial_number=cmd.serial_number,
            model=cmd.model,
            manufacturer=cmd.manufacturer,
            patient_id=cmd.patient_id,
            created_at=now,
            last_seen_at=None,
        )
        uow.session.add(device)
        # Flushed first so that the device row exists when its credential's foreign key is checked.
        await uow.session.flush()
        uow.session.add(_credential(device.id, token, now))
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
        uow.publish(
            audit_record(
                principal,
                "device.create",
                occurred_at=now,
                object_type="device",
                object_id=device.id,
                patient_id=device.patient_id,
            )
        )
        await uow.commit()
    return DeviceRegistered(**_read(device).model_dump(), token=token)


async def rotate_credentials(
    *,
    uow: UnitOfWork,
    cache: Cache,
    principal: UserPrincipal,
    device_id: str,
    cmd: CredentialRotate,
) -> CredentialIssued:
    """Issue a new token; the device's previous tokens keep working for the grace period."""
    token = new_device_token()
    async with uow:
        device = await _device_for_change(uow, principal, device_id)
        now = uow.clock.now()
        valid_until = now + dt.timedelta(seconds=cmd.grace_seconds)
        held = await repository.credentials(uow.session, principal.organisation_id, device_id)
        shortened = [old for old in held if old.expire_by(valid_until)]
        credential = _credential(device.id, token, now)
        uow.session.add(credential)
        uow.publish(
            audit_record(
                principal,
                "device.credentials.rotate",
                occurred_at=now,
                object_type="device",
                object_id=device.id,
                patient_id=device.patient_id,
                detail={"credential_id": credential.id, "grace_seconds": cmd.grace_seconds},
            )
        )
        await uow.commit()
    # After the commit: deleted before it, a lookup running meanwhile could cache the old state.
    await _forget(cache, shortened)
    return CredentialIssued(
        **_read_credential(credential).model_dump(), token=token, previous_valid_until=valid_until
    )


async def revoke_credentials(
    *, uow: UnitOfWork, cache: Cache, principal: UserPrincipal, device_id: str
) -> CredentialList:
    """Stop every token of the device at once."""
    async with uow:
        device = await _device_for_change(uow, principal, device_id)
        now = uow.clock.now()
        held = await repository.credentials(uow.session, principal.organisation_id, device_id)
        revoked = [credential for credential in held if credential.revoke(now)]
        uow.publish(
            audit_record(
                principal,
                "device.credentials.revoke",
                occurred_at=now,
                object_type="device",
                object_id=device.id,
                patient_id=device.patient_id,
                detail={"revoked": len(revoked)},
            )
        )
        await uow.commit()
    await _forget(cache, revoked)
    return CredentialList(items=[_read_credential(credential) for credential in held])


async def list_credentials(
    *, session: AsyncSession, principal: UserPrincipal, device_id: str
) -> CredentialList:
    """Return the credentials of a device of the principal's organisation, newest first."""
    device = await repository.get_in_organisation(session, principal.organisation_id, device_id)
    if device is None:
        raise NotFound("device not found")
    held = await repository.credentials(session, principal.organisation_id, device_id)
    return CredentialList(items=[_read_credential(credential) for credential in held])


async def _visible_patients(care: CareDirectory, principal: UserPrincipal) -> frozenset[str] | None:
    """Return the patients whose devices a clinician or nurse may see; None: every device.

    Admins and technicians look after every device of the organisation; clinical staff see
    only the devices of the patients in their care, since a device names its patient.
    """
    if principal.role not in (Role.CLINICIAN, Role.NURSE):
        return None
    scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
    return scope.patient_ids


async def get_device(
    *, session: AsyncSession, care: CareDirectory, principal: UserPrincipal, device_id: str
) -> DeviceRead:
    """Return a device of the principal's organisation, within a clinician's care scope."""
    device = await repository.get_in_organisation(session, principal.organisation_id, device_id)
    if device is None:
        raise NotFound("device not found")
    visible = await _visible_patients(care, principal)
    if visible is not None and device.patient_id not in visible:
        raise OutOfScope("device not found")
    return _read(device)


async def list_devices(
    *,
    session: AsyncSession,
    care: CareDirectory,
    principal: UserPrincipal,
    limit: int,
    cursor: str | None,
) -> DevicePage:
    """Return one page of the devices the principal may see, newest first."""
    after = decode_cursor(cursor) if cursor else None
    devices = await repository.page(
        session,
        principal.organisation_id,
        patients=await _visible_patients(care, principal),
        limit=limit + 1,
        after=after,
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


def _read_credential(credential: DeviceCredential) -> CredentialRead:
    return CredentialRead(
        id=credential.id,
        created_at=credential.created_at,
        expires_at=credential.expires_at,
        revoked_at=credential.revoked_at,
        last_used_at=credential.last_used_at,
    )


def _credential(device_id: str, token: str, now: dt.datetime) -> DeviceCredential:
    return DeviceCredential(
        id=str(uuid.uuid4()),
        device_id=device_id,
        token_hash=hash_device_token(token),
        created_at=now,
        expires_at=None,
        revoked_at=None,
        last_used_at=None,
    )


async def _device_for_change(uow: UnitOfWork, principal: UserPrincipal, device_id: str) -> Device:
    # Locked so that concurrent rotations of one device apply one after the other.
    device = await repository.get_in_organisation(
        uow.session, principal.organisation_id, device_id, for_update=True
    )
    if device is None:
        raise NotFound("device not found")
    return device


async def _forget(cache: Cache, credentials: Iterable[DeviceCredential]) -> None:
    for credential in credentials:
        await cache.delete(device_cache_key(credential.token_hash))
