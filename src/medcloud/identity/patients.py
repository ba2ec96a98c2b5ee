"""Use cases of the patient registry: registration, care-scoped reads and moves, break-glass."""

from __future__ import annotations

import datetime as dt
import uuid

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.config import Settings
from medcloud.identity import repository
from medcloud.identity.models import BreakGlassGrant, Patient
from medcloud.identity.schemas import (
    BreakGlassRead,
    PatientCreate,
    PatientPage,
    PatientRead,
    PatientUpdate,
)
from medcloud.platform.audit import AuditRecorded, audit_record
from medcloud.platform.directory import CareDirectory
from medcloud.platform.errors import Conflict, FieldError, Invalid, NotFound
from medcloud.platform.paging import decode_cursor, page_of
from medcloud.platform.policy import ensure_in_care_scope
from medcloud.platform.security import Role, UserPrincipal
from medcloud.platform.uow import UnitOfWork

log = structlog.get_logger(__name__)


async def create_patient(
    *, uow: UnitOfWork, principal: UserPrincipal, cmd: PatientCreate
) -> PatientRead:
    """Register a patient in the organisation, optionally in a care team."""
    now = uow.clock.now()
    async with uow:
        if await repository.patient_identifier_taken(
            uow.session, principal.organisation_id, cmd.identifier_system, cmd.identifier_value
        ):
            raise Conflict(
                "a patient with this identifier exists",
                errors=[FieldError("identifier_value", "already registered")],
            )
        if cmd.ward_id is not None:
            await _check_ward(uow.session, principal.organisation_id, cmd.ward_id)
            await _check_own_ward(uow.session, principal, cmd.ward_id)
        patient = Patient(
            id=str(uuid.uuid4()),
            organisation_id=principal.organisation_id,
            identifier_system=cmd.identifier_system,
            identifier_value=cmd.identifier_value,
            family_name=cmd.family_name,
            given_name=cmd.given_name,
            birth_date=cmd.birth_date,
            ward_id=cmd.ward_id,
            created_at=now,
        )
        uow.session.add(patient)
        uow.publish(_patient_audit(uow, principal, "patient.create", patient))
        await uow.commit()
    return PatientRead.model_validate(patient)


async def get_patient(
    *, uow: UnitOfWork, care: CareDirectory, principal: UserPrincipal, patient_id: str
) -> PatientRead:
    """Return a patient within the user's care scope; the read is audited."""
    async with uow:
        patient = await _patient_in_scope(uow, care, principal, patient_id)
        uow.publish(_patient_audit(uow, principal, "patient.read", patient))
        await uow.commit()
    return PatientRead.model_validate(patient)


async def list_patients(
    *,
    uow: UnitOfWork,
    care: CareDirectory,
    principal: UserPrincipal,
    limit: int,
    cursor: str | None,
) -> PatientPage:
    """Return the patients within the user's care scope, newest first; the read is audited."""
    scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
    after = decode_cursor(cursor) if cursor else None
    async with uow:
        patients = await repository.page_patients(
            uow.session,
            principal.organisation_id,
            only=None if scope.whole_organisation else scope.patient_ids,
            limit=limit + 1,
            after=after,
        )
        uow.publish(
            audit_record(
                principal,
                "patient.list",
                occurred_at=uow.clock.now(),
                object_type="patient",
                detail={"count": min(len(patients), limit)},
            )
        )
        await uow.commit()
    shown, next_cursor = page_of(patients, limit, lambda p: (p.created_at, p.id))
    return PatientPage(
        items=[PatientRead.model_validate(p) for p in shown], next_cursor=next_cursor
    )


async def update_patient(
    *,
    uow: UnitOfWork,
    care: CareDirectory,
    principal: UserPrincipal,
    patient_id: str,
    cmd: PatientUpdate,
) -> PatientRead:
    """Move a patient to another care team."""
    async with uow:
        patient = await _patient_in_scope(uow, care, principal, patient_id)
        if cmd.ward_id is not None:
            await _check_ward(uow.session, principal.organisation_id, cmd.ward_id)
        patient.ward_id = cmd.ward_id
        uow.publish(_patient_audit(uow, principal, "patient.update", patient))
        await uow.commit()
    return PatientRead.model_validate(patient)


async def break_glass(
    *,
    uow: UnitOfWork,
    principal: UserPrincipal,
    settings: Settings,
    patient_id: str,
    reason: str,
) -> BreakGlassRead:
    """Grant a clinician time-limited access to a patient outside their care teams."""
    now = uow.clock.now()
    async with uow:
        patient = await repository.get_patient(uow.session, patient_id)
        if patient is None or patient.organisation_id != principal.organisation_id:
            raise NotFound("patient not found")
        grant = BreakGlassGrant(
            id=str(uuid.uuid4()),
            organisation_id=principal.organisation_id,
            user_id=principal.user_id,
            patient_id=patient.id,
            reason=reason,
            granted_at=now,
            expires_at=now + dt.timedelta(minutes=settings.identity.break_glass_minutes),
        )
        uow.session.add(grant)
        uow.publish(
            audit_record(
                principal,
                "patient.break_glass",
                occurred_at=now,
                object_type="patient",
                object_id=patient.id,
                patient_id=patient.id,
                detail={"reason": reason, "expires_at": grant.expires_at.isoformat()},
            )
        )
        await uow.commit()
    log.warning("identity.break_glass", user_id=principal.user_id, grant_id=grant.id)
    return BreakGlassRead(
        id=grant.id, patient_id=patient.id, granted_at=grant.granted_at, expires_at=grant.expires_at
    )


async def _patient_in_scope(
    uow: UnitOfWork, care: CareDirectory, principal: UserPrincipal, patient_id: str
) -> Patient:
    patient = await repository.get_patient(uow.session, patient_id)
    if patient is None or patient.organisation_id != principal.organisation_id:
        raise NotFound("patient not found")
    scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
    ensure_in_care_scope(scope, patient.id, "patient")
    return patient


async def _check_ward(session: AsyncSession, organisation_id: str, ward_id: str) -> None:
    if not await repository.wards_in_organisation(session, organisation_id, [ward_id]):
        raise Invalid("unknown ward", errors=[FieldError("ward_id", "no such ward")])


async def _check_own_ward(session: AsyncSession, principal: UserPrincipal, ward_id: str) -> None:
    """Let clinicians and nurses register patients only into their own care teams: into another,
    a patient would appear on a ward whose staff never admitted them."""
    if principal.role is Role.ADMIN:
        return
    wards = await repository.ward_ids_of(session, [principal.user_id])
    if ward_id not in wards.get(principal.user_id, []):
        raise Invalid(
            "patients are registered into one of your own care teams",
            errors=[FieldError("ward_id", "not one of your care teams")],
        )


def _patient_audit(
    uow: UnitOfWork, principal: UserPrincipal, action: str, patient: Patient
) -> AuditRecorded:
    return audit_record(
        principal,
        action,
        occurred_at=uow.clock.now(),
        object_type="patient",
        object_id=patient.id,
        patient_id=patient.id,
    )
