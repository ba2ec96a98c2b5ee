"""Use cases of the devices context's registry: devices, their models and their patients.

A device's credentials are in `credentials.py`, its status and liveness in `status.py`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.devices import firmware, repository, rollout_repository, rollouts
from medcloud.devices.credentials import forget, new_credential
from medcloud.devices.events import DeviceAssignmentChanged
from medcloud.devices.events import DeviceRegistered as DeviceRegisteredEvent
from medcloud.devices.models import Device, DeviceAssignment, DeviceCredential, DeviceModel
from medcloud.devices.mqtt import NO_BROKER, BrokerAccess, BrokerUnavailable
from medcloud.devices.schemas import (
    AssignmentList,
    AssignmentRead,
    AssignmentSet,
    DeviceCreate,
    DeviceModelCreate,
    DeviceModelList,
    DeviceModelRead,
    DevicePage,
    DeviceRead,
    DeviceRegistered,
    DeviceUpdate,
)
from medcloud.devices.status import LOW_BATTERY, OFFLINE, resolve_alert, set_status
from medcloud.devices.visibility import visible_device, visible_patients
from medcloud.platform.audit import audit_record
from medcloud.platform.cache import Cache
from medcloud.platform.directory import CareDirectory, PatientDirectory
from medcloud.platform.errors import Conflict, FieldError, Invalid, NotFound
from medcloud.platform.paging import decode_cursor, page_of
from medcloud.platform.security import UserPrincipal, new_device_token
from medcloud.platform.uow import UnitOfWork


async def register_device(
    *,
    uow: UnitOfWork,
    patients: PatientDirectory,
    principal: UserPrincipal,
    cmd: DeviceCreate,
    broker: BrokerAccess = NO_BROKER,
) -> DeviceRegistered:
    """Register a device in the principal's organisation and issue its first token.

    With MQTT configured its broker credentials are created first, outside the transaction (no
    lock is held while the broker answers): a registered device always has working MQTT
    credentials, and if the broker does not confirm them nothing is registered (503). A broker
    client left by a registration that fails afterwards is removed, or harmless if that fails
    too: its password is a token nobody was given.
    """
    token = new_device_token()
    if cmd.patient_id is not None:
        await _check_patient(patients, principal, cmd.patient_id)
    device_id = str(uuid.uuid4())
    await broker.grant(device_id, token)
    try:
        return await _register(uow, principal, cmd, device_id, token)
    except Exception:
        with contextlib.suppress(BrokerUnavailable):
            await broker.remove(device_id)
        raise


async def _register(
    uow: UnitOfWork, principal: UserPrincipal, cmd: DeviceCreate, device_id: str, token: str
) -> DeviceRegistered:
    async with uow:
        if await repository.serial_taken(uow.session, principal.organisation_id, cmd.serial_number):
            raise Conflict(
                "a device with this serial number is already registered",
                errors=[FieldError("serial_number", "already registered")],
            )
        profile: DeviceModel | None
        if cmd.model_id is not None:
            profile = await _model(uow.session, principal, cmd.model_id)
        else:
            assert cmd.manufacturer is not None and cmd.model is not None  # noqa: S101  (validated)
            profile = await repository.find_model(
                uow.session, principal.organisation_id, cmd.manufacturer, cmd.model
            )
        now = uow.clock.now()
        device = Device(
            id=device_id,
            organisation_id=principal.organisation_id,
            serial_number=cmd.serial_number,
            model=profile.model if profile else cmd.model,
            manufacturer=profile.manufacturer if profile else cmd.manufacturer,
            model_id=profile.id if profile else None,
            patient_id=cmd.patient_id,
            udi=cmd.udi,
            hardware_revision=cmd.hardware_revision,
            firmware_version=cmd.firmware_version,
            ward_id=cmd.ward_id,
            location=cmd.location,
            status="unknown",
            created_at=now,
            last_seen_at=None,
        )
        uow.session.add(device)
        # Flushed first so that the device row exists when its credential's foreign key is checked.
        await uow.session.flush()
        uow.session.add(new_credential(device.id, token, now))
        if device.patient_id is not None:
            uow.session.add(_assignment(device.id, device.patient_id, now))
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
    return DeviceRegistered(**DeviceRead.model_validate(device).model_dump(), token=token)


async def update_device(
    *,
    uow: UnitOfWork,
    cache: Cache,
    principal: UserPrincipal,
    device_id: str,
    cmd: DeviceUpdate,
    broker: BrokerAccess = NO_BROKER,
) -> DeviceRead:
    """Change a device's details, or decommission it (its history stays, its MQTT client goes)."""
    changes = cmd.model_dump(exclude_unset=True)
    revoked: list[DeviceCredential] = []
    async with uow:
        device = await repository.lock_in_organisation(
            uow.session, principal.organisation_id, device_id
        )
        if device.status == "decommissioned":
            raise Conflict("the device is decommissioned; it can no longer change")
        now = uow.clock.now()
        if changes.get("model_id") is not None:
            profile = await _model(uow.session, principal, changes["model_id"])
            device.model, device.manufacturer = profile.model, profile.manufacturer
        for field in ("udi", "hardware_revision", "ward_id", "location", "model_id"):
            if field in changes:
                setattr(device, field, changes[field])
        action = "device.update"
        if changes.get("decommissioned"):
            action = "device.decommission"
            revoked = await _decommission(uow, device, now)
            # Before the commit: a broker that does not confirm leaves the device as it was.
            await broker.remove(device.id)
        uow.publish(
            audit_record(
                principal,
                action,
                occurred_at=now,
                object_type="device",
                object_id=device.id,
                patient_id=device.patient_id,
                detail={"fields": sorted(changes)},
            )
        )
        await uow.commit()
    await forget(cache, revoked)
    return DeviceRead.model_validate(device)


async def _decommission(
    uow: UnitOfWork, device: Device, now: dt.datetime
) -> list[DeviceCredential]:
    """End the assignment, stop the tokens and pending updates, close alerts; keep the rows."""
    await _end_assignment(uow, device, now)
    held = await repository.credentials(uow.session, device.organisation_id, device.id)
    revoked = [credential for credential in held if credential.revoke(now)]
    for kind in (OFFLINE, LOW_BATTERY):
        await resolve_alert(uow, device, kind, now)
    # Campaigns before their updates: the one lock order every rollout path keeps.
    await rollouts.lock_campaigns_of(uow, device, rollout_repository.UNFINISHED)
    for target, _campaign in await rollout_repository.device_targets(
        uow.session, device.id, rollout_repository.UNFINISHED
    ):
        target.status, target.reason, target.updated_at = "cancelled", "decommissioned", now
    device.decommissioned_at = now
    set_status(uow, device, "decommissioned", now)
    return revoked


async def assign_device(
    *,
    uow: UnitOfWork,
    patients: PatientDirectory,
    cache: Cache,
    principal: UserPrincipal,
    device_id: str,
    cmd: AssignmentSet,
) -> AssignmentList:
    """Attach the device to a patient from now on (ending any current assignment), or detach it."""
    async with uow:
        # The device first: another organisation's device is not found, whatever the patient.
        device = await repository.lock_in_organisation(
            uow.session, principal.organisation_id, device_id
        )
        if cmd.patient_id is not None:
            await _check_patient(patients, principal, cmd.patient_id)
        if device.status == "decommissioned":
            raise Conflict(
                "a decommissioned device cannot be assigned",
                errors=[FieldError("patient_id", "the device is decommissioned")],
            )
        if device.patient_id != cmd.patient_id:
            now = uow.clock.now()
            previous = device.patient_id
            await _end_assignment(uow, device, now, announce=False)
            if cmd.patient_id is not None:
                uow.session.add(_assignment(device.id, cmd.patient_id, now))
            device.patient_id = cmd.patient_id
            uow.publish(
                DeviceAssignmentChanged(
                    organisation_id=device.organisation_id,
                    device_id=device.id,
                    patient_id=cmd.patient_id,
                    previous_patient_id=previous,
                    at=now,
                )
            )
            uow.publish(
                audit_record(
                    principal,
                    "device.assign",
                    occurred_at=now,
                    object_type="device",
                    object_id=device.id,
                    patient_id=cmd.patient_id or previous,
                    detail={"previous_patient_id": previous},
                )
            )
            await uow.session.flush()
        held = await repository.credentials(uow.session, device.organisation_id, device.id)
        history = await repository.assignments(uow.session, device.id)
        await uow.commit()
    # A cached token names the device's patient; forget it so readings go to the new one.
    await forget(cache, held)
    return AssignmentList(items=[AssignmentRead.model_validate(a) for a in history])


async def list_assignments(
    *, session: AsyncSession, care: CareDirectory, principal: UserPrincipal, device_id: str
) -> AssignmentList:
    """Return a visible device's assignment history, newest first."""
    await visible_device(session, care, principal, device_id)
    history = await repository.assignments(session, device_id)
    return AssignmentList(items=[AssignmentRead.model_validate(a) for a in history])


async def _end_assignment(
    uow: UnitOfWork, device: Device, now: dt.datetime, *, announce: bool = True
) -> None:
    current = await repository.current_assignment(uow.session, device.id)
    if current is not None:
        current.ended_at = now
    if announce and device.patient_id is not None:
        uow.publish(
            DeviceAssignmentChanged(
                organisation_id=device.organisation_id,
                device_id=device.id,
                patient_id=None,
                previous_patient_id=device.patient_id,
                at=now,
            )
        )
    if announce:
        device.patient_id = None


async def _check_patient(
    patients: PatientDirectory, principal: UserPrincipal, patient_id: str
) -> None:
    patient = await patients.get(patient_id)
    if patient is None or patient.organisation_id != principal.organisation_id:
        raise Invalid(
            "the device cannot be assigned to that patient",
            errors=[FieldError("patient_id", "no such patient")],
        )


async def _model(session: AsyncSession, principal: UserPrincipal, model_id: str) -> DeviceModel:
    profile = await repository.get_model(session, principal.organisation_id, model_id)
    if profile is None:
        raise Invalid(
            "no such device model", errors=[FieldError("model_id", "no such device model")]
        )
    return profile


async def get_device(
    *, session: AsyncSession, care: CareDirectory, principal: UserPrincipal, device_id: str
) -> DeviceRead:
    """Return a device of the principal's organisation, within a clinician's care scope."""
    return DeviceRead.model_validate(await visible_device(session, care, principal, device_id))


async def list_devices(
    *,
    session: AsyncSession,
    care: CareDirectory,
    principal: UserPrincipal,
    limit: int,
    cursor: str | None,
    where: repository.DeviceFilter | None = None,
) -> DevicePage:
    """Return one page of the devices the principal may see, newest first, filtered."""
    after = decode_cursor(cursor) if cursor else None
    devices = await repository.page(
        session,
        principal.organisation_id,
        patients=await visible_patients(care, principal),
        limit=limit + 1,
        after=after,
        where=where or repository.DeviceFilter(),
    )
    shown, next_cursor = page_of(devices, limit, lambda d: (d.created_at, d.id))
    return DevicePage(
        items=[DeviceRead.model_validate(device) for device in shown], next_cursor=next_cursor
    )


async def create_model(
    *, uow: UnitOfWork, principal: UserPrincipal, cmd: DeviceModelCreate
) -> DeviceModelRead:
    """Register a device model; the organisation's devices that name it are linked to it."""
    try:
        firmware.load_public_key(cmd.signing_public_key)
    except ValueError as exc:
        raise Invalid(
            "the signing key is not usable",
            errors=[FieldError("signing_public_key", f"{exc}: give a PEM Ed25519 public key")],
        ) from exc
    async with uow:
        if await repository.find_model(
            uow.session, principal.organisation_id, cmd.manufacturer, cmd.model
        ):
            raise Conflict(
                "this model is already registered",
                errors=[FieldError("model", "already registered for this manufacturer")],
            )
        now = uow.clock.now()
        profile = DeviceModel(
            id=str(uuid.uuid4()),
            organisation_id=principal.organisation_id,
            manufacturer=cmd.manufacturer,
            model=cmd.model,
            measurement_types=orjson.dumps(cmd.measurement_types).decode(),
            reporting_interval_seconds=cmd.reporting_interval_seconds,
            signing_public_key=cmd.signing_public_key.strip() + "\n",
            created_at=now,
        )
        uow.session.add(profile)
        await uow.session.flush()
        await repository.adopt_devices(uow.session, profile)
        uow.publish(
            audit_record(
                principal,
                "device_model.create",
                occurred_at=now,
                object_type="device_model",
                object_id=profile.id,
            )
        )
        await uow.commit()
    return _read_model(profile)


async def list_models(*, session: AsyncSession, principal: UserPrincipal) -> DeviceModelList:
    """Return the organisation's device models."""
    found = await repository.models(session, principal.organisation_id)
    return DeviceModelList(items=[_read_model(profile) for profile in found])


async def get_model(
    *, session: AsyncSession, principal: UserPrincipal, model_id: str
) -> DeviceModelRead:
    """Return one of the organisation's device models."""
    profile = await repository.get_model(session, principal.organisation_id, model_id)
    if profile is None:
        raise NotFound("device model not found")
    return _read_model(profile)


def _read_model(profile: DeviceModel) -> DeviceModelRead:
    return DeviceModelRead(
        id=profile.id,
        manufacturer=profile.manufacturer,
        model=profile.model,
        measurement_types=orjson.loads(profile.measurement_types),
        reporting_interval_seconds=profile.reporting_interval_seconds,
        signing_public_key=profile.signing_public_key,
        created_at=profile.created_at,
    )


def _assignment(device_id: str, patient_id: str, now: dt.datetime) -> DeviceAssignment:
    return DeviceAssignment(
        id=str(uuid.uuid4()), device_id=device_id, patient_id=patient_id, started_at=now
    )
