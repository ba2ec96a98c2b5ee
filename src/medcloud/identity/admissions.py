"""Patients another system registers or updates (an HL7 ADT, a PID naming someone new):
the identity context's `PatientRegistry`.

The sending system is the authority on its patients' identifiers, names, birth dates and
ward: what it says is recorded, audited as the interface that said it. Its ward is matched by
name to one of the organisation's care teams; a ward medcloud does not have leaves the patient
where they were (care teams are made by administrators, not by messages).
"""

from __future__ import annotations

import uuid
from typing import TypeVar

from sqlalchemy.exc import IntegrityError

from medcloud.identity import repository
from medcloud.identity.models import Patient
from medcloud.platform.audit import ServiceActor, audit_record
from medcloud.platform.directory import PatientDetails, PatientRef
from medcloud.platform.errors import FieldError, Invalid
from medcloud.platform.uow import UnitOfWork, UnitOfWorkFactory

T = TypeVar("T")


class SqlPatientRegistry:
    """The identity context's `PatientRegistry`."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    async def find(self, organisation_id: str, system: str, value: str) -> PatientRef | None:
        """Return the organisation's patient with this identifier, or None."""
        async with self._uow_factory() as uow:
            found = await repository.patient_by_identifier(
                uow.session, organisation_id, system, value
            )
        return None if found is None else _ref(found)

    async def record(
        self, organisation_id: str, details: PatientDetails, *, actor: str
    ) -> tuple[PatientRef, bool]:
        """Register the patient, or update the one with this identifier; return it and whether
        it is new."""
        try:
            return await self._record(organisation_id, details, actor)
        except IntegrityError:
            # Registered by another connection meanwhile: update that one instead.
            return await self._record(organisation_id, details, actor)

    async def _record(
        self, organisation_id: str, details: PatientDetails, actor: str
    ) -> tuple[PatientRef, bool]:
        async with self._uow_factory() as uow:
            session = uow.session
            patient = await repository.patient_by_identifier(
                session, organisation_id, details.identifier_system, details.identifier_value
            )
            ward_id = await _ward_id(uow, organisation_id, details.ward)
            now = uow.clock.now()
            new = patient is None
            if patient is None:
                patient = Patient(
                    id=str(uuid.uuid4()),
                    organisation_id=organisation_id,
                    identifier_system=details.identifier_system,
                    identifier_value=details.identifier_value,
                    family_name=_required(details.family_name, "family_name"),
                    given_name=_required(details.given_name, "given_name"),
                    birth_date=_required(details.birth_date, "birth_date"),
                    ward_id=ward_id,
                    created_at=now,
                )
                session.add(patient)
                changed = ["registered"]
            else:
                changed = _update(patient, details, ward_id)
            if changed:
                uow.publish(
                    audit_record(
                        ServiceActor(actor, organisation_id),
                        "patient.create" if new else "patient.update",
                        occurred_at=now,
                        object_type="patient",
                        object_id=patient.id,
                        patient_id=patient.id,
                        detail={"fields": changed},
                    )
                )
            await uow.commit()
        return _ref(patient), new


def _update(patient: Patient, details: PatientDetails, ward_id: str | None) -> list[str]:
    """Apply what the sender says that differs; name the fields changed (never their values)."""
    changed = []
    for name in ("family_name", "given_name", "birth_date"):
        said = getattr(details, name)
        if said is not None and said != getattr(patient, name):
            setattr(patient, name, said)
            changed.append(name)
    if ward_id is not None and ward_id != patient.ward_id:
        patient.ward_id = ward_id
        changed.append("ward_id")
    return changed


async def _ward_id(uow: UnitOfWork, organisation_id: str, name: str | None) -> str | None:
    if not name:
        return None
    ward = await repository.ward_named(uow.session, organisation_id, name)
    return None if ward is None else ward.id


def _required(value: T | None, name: str) -> T:
    if value is None or value == "":
        raise Invalid(
            "a patient cannot be registered without their name and birth date",
            errors=[FieldError(name, "required to register a patient")],
        )
    return value


def _ref(patient: Patient) -> PatientRef:
    return PatientRef(patient.id, patient.organisation_id, patient.ward_id)
