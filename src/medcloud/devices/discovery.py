"""Equipment another system names: found by its identifier, registered when never seen, and
attached to the patient that system says it monitors (`EquipmentRegistry`).

An HL7 gateway names each monitor by an identifier (OBX-18, an EUI-64) and each message's
patient (PID). The monitor is the organisation's device with that serial number; one never
seen is registered as discovered (no credentials: it speaks only through its gateway), for an
administrator to complete. Each change is audited as the interface that caused it.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy.exc import IntegrityError

from medcloud.devices import repository
from medcloud.devices.credentials import forget
from medcloud.devices.events import DeviceAssignmentChanged, DeviceRegistered
from medcloud.devices.models import Device, DeviceAssignment
from medcloud.platform.audit import ServiceActor, audit_record
from medcloud.platform.cache import Cache
from medcloud.platform.directory import DeviceRef
from medcloud.platform.uow import UnitOfWorkFactory

UNKNOWN = "unknown"
"""Manufacturer and model of discovered equipment until an administrator says."""


class SqlEquipmentRegistry:
    """The devices context's `EquipmentRegistry`."""

    def __init__(self, uow_factory: UnitOfWorkFactory, cache: Cache) -> None:
        self._uow_factory = uow_factory
        self._cache = cache

    async def equipment(
        self, organisation_id: str, identifier: str, *, actor: str
    ) -> tuple[DeviceRef, bool]:
        """Return the device with this serial number, registering it if none has it; and
        whether it is new."""
        found = await self._find(organisation_id, identifier)
        if found is not None:
            return found, False
        try:
            return await self._discover(organisation_id, identifier, actor), True
        except IntegrityError:
            # Another connection discovered it first: theirs is the device.
            found = await self._find(organisation_id, identifier)
            if found is None:
                raise
            return found, False

    async def attach(
        self, device: DeviceRef, patient_id: str, *, since: dt.datetime, actor: str
    ) -> DeviceRef:
        """Assign the device to the patient from `since` (no earlier than its last assignment
        change) unless it already is; return it as it now is."""
        if device.patient_id == patient_id:
            return device
        async with self._uow_factory() as uow:
            held = await repository.lock_in_organisation(
                uow.session, device.organisation_id, device.id
            )
            if held.patient_id == patient_id:
                await uow.commit()
                return _ref(held, await repository.last_assignment_change(uow.session, held.id))
            last = await repository.last_assignment_change(uow.session, held.id)
            now = uow.clock.now()
            # The readings that announce the patient were taken a moment before they arrived:
            # they are the patient's too, but what was assigned before keeps its own past.
            start = min(max(since, last) if last is not None else since, now)
            current = await repository.current_assignment(uow.session, held.id)
            if current is not None:
                current.ended_at = start
            previous, held.patient_id = held.patient_id, patient_id
            uow.session.add(
                DeviceAssignment(
                    id=str(uuid.uuid4()), device_id=held.id, patient_id=patient_id, started_at=start
                )
            )
            uow.publish(
                DeviceAssignmentChanged(
                    organisation_id=held.organisation_id,
                    device_id=held.id,
                    patient_id=patient_id,
                    previous_patient_id=previous,
                    at=start,
                )
            )
            uow.publish(
                audit_record(
                    ServiceActor(actor, held.organisation_id),
                    "device.assign",
                    occurred_at=now,
                    object_type="device",
                    object_id=held.id,
                    patient_id=patient_id,
                    detail={"previous_patient_id": previous},
                )
            )
            credentials = await repository.credentials(uow.session, held.organisation_id, held.id)
            await uow.commit()
        # A cached token names the device's patient; forget it so readings go to the new one.
        await forget(self._cache, credentials)
        return _ref(held, start)

    async def _find(self, organisation_id: str, identifier: str) -> DeviceRef | None:
        async with self._uow_factory() as uow:
            device = await repository.by_serial(uow.session, organisation_id, identifier)
            if device is None:
                return None
            return _ref(device, await repository.last_assignment_change(uow.session, device.id))

    async def _discover(self, organisation_id: str, identifier: str, actor: str) -> DeviceRef:
        async with self._uow_factory() as uow:
            now = uow.clock.now()
            device = Device(
                id=str(uuid.uuid4()),
                organisation_id=organisation_id,
                serial_number=identifier,
                model=UNKNOWN,
                manufacturer=UNKNOWN,
                status="unknown",
                created_at=now,
            )
            uow.session.add(device)
            uow.publish(
                DeviceRegistered(
                    organisation_id=organisation_id,
                    device_id=device.id,
                    serial_number=identifier,
                    model=UNKNOWN,
                    manufacturer=UNKNOWN,
                    patient_id=None,
                )
            )
            uow.publish(
                audit_record(
                    ServiceActor(actor, organisation_id),
                    "device.discover",
                    occurred_at=now,
                    object_type="device",
                    object_id=device.id,
                )
            )
            await uow.commit()
        return _ref(device, None)


def _ref(device: Device, since: dt.datetime | None) -> DeviceRef:
    return DeviceRef(
        device.id,
        device.organisation_id,
        device.patient_id,
        patient_since=since,
        decommissioned=device.status == "decommissioned",
    )
