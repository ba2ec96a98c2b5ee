"""Who may see which patient, device and reading through the FHIR API, and the audit of each
read: the REST API's rules (organisation, care scope, the devices context's visibility), asked
of the published interfaces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medcloud.interop import fhir
from medcloud.platform.audit import audit_record
from medcloud.platform.directory import (
    CareDirectory,
    CareScope,
    DeviceCard,
    DeviceDirectory,
    PatientCard,
    PatientDirectory,
    ReadingHistory,
)
from medcloud.platform.errors import NotFound, OutOfScope
from medcloud.platform.policy import ensure_in_care_scope, ensure_same_organisation
from medcloud.platform.security import Role, UserPrincipal
from medcloud.platform.uow import UnitOfWork


@dataclass(frozen=True)
class Sources:
    """The published interfaces the FHIR API reads through."""

    patients: PatientDirectory
    devices: DeviceDirectory
    readings: ReadingHistory
    care: CareDirectory


async def care_scope(sources: Sources, principal: UserPrincipal) -> CareScope:
    """The user's care scope now."""
    return await sources.care.scope(
        principal.user_id, principal.organisation_id, principal.role.value
    )


async def patient_in_scope(
    sources: Sources, principal: UserPrincipal, patient_id: str, *, scope: CareScope | None = None
) -> PatientCard:
    """The patient, of the user's organisation and care scope; 404 otherwise."""
    cards = await sources.patients.cards([patient_id])
    if not cards:
        raise NotFound("patient not found")
    ensure_same_organisation(principal, cards[0].organisation_id, "patient")
    ensure_in_care_scope(scope or await care_scope(sources, principal), patient_id, "patient")
    return cards[0]


async def visible_patients(sources: Sources, principal: UserPrincipal) -> frozenset[str] | None:
    """The patients whose devices the user may see; None: every device of the organisation.

    The devices context's rule: admins and technicians look after every device, clinical
    staff see those of the patients in their care.
    """
    if principal.role not in (Role.CLINICIAN, Role.NURSE):
        return None
    return (await care_scope(sources, principal)).patient_ids


async def device_visible(sources: Sources, principal: UserPrincipal, device_id: str) -> DeviceCard:
    """The device, of the user's organisation and visible to them; 404 otherwise."""
    card = await device_in_organisation(sources, principal, device_id)
    visible = await visible_patients(sources, principal)
    if visible is not None and card.patient_id not in visible:
        raise OutOfScope("device not found")
    return card


async def audit(
    uow: UnitOfWork,
    principal: UserPrincipal,
    action: str,
    object_type: str,
    object_id: str | None,
    *,
    patient_id: str | None = None,
    **detail: Any,
) -> None:
    """Record one read in the audit log, committed before the answer leaves."""
    async with uow:
        entry = audit_record(
            principal,
            action,
            occurred_at=uow.clock.now(),
            patient_id=patient_id,
            object_type=object_type,
            object_id=object_id,
            detail={"interface": "fhir", **detail},
        )
        uow.publish(entry)
        await uow.commit()


def patient_record(card: PatientCard) -> fhir.PatientRecord:
    """What the mapping needs of a patient."""
    return fhir.PatientRecord(
        id=card.id,
        identifier_system=card.identifier_system,
        identifier_value=card.identifier_value,
        family_name=card.family_name,
        given_name=card.given_name,
        birth_date=card.birth_date,
        sex=None,
        organisation_id=card.organisation_id,
        ward=card.ward_id,
    )


def device_record(card: DeviceCard) -> fhir.DeviceRecord:
    """What the mapping needs of a device."""
    return fhir.DeviceRecord(
        id=card.id,
        serial_number=card.serial_number,
        manufacturer=card.manufacturer,
        model=card.model,
        udi=card.udi,
        firmware_version=card.firmware_version,
        status=card.status,
        decommissioned=card.decommissioned,
        patient_id=card.patient_id,
        organisation_id=card.organisation_id,
    )


async def device_in_organisation(
    sources: Sources, principal: UserPrincipal, device_id: str
) -> DeviceCard:
    card = await sources.devices.card(device_id)
    if card is None:
        raise NotFound("device not found")
    ensure_same_organisation(principal, card.organisation_id, "device")
    return card
