"""The identity context's published interfaces: patients, and whose data a user may see."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.identity import repository
from medcloud.identity.models import Patient, UserAccount
from medcloud.platform.clock import Clock
from medcloud.platform.directory import CareScope, PatientCard, PatientQuery, PatientRef
from medcloud.platform.security import Role

NOBODY = CareScope(whole_organisation=False, patient_ids=frozenset())
EVERYONE = CareScope(whole_organisation=True, patient_ids=frozenset())


class SqlPatientDirectory:
    """Look patients up in the registry."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def get(self, patient_id: str) -> PatientRef | None:
        """Return the patient, or None."""
        async with self._sessions() as session:
            found = await repository.patient_reference(session, patient_id)
        return None if found is None else PatientRef(*found)

    async def wards(self, patient_ids: Sequence[str]) -> dict[str, str | None]:
        """Return the ward of each known patient (None: in no ward), in one look-up."""
        if not patient_ids:
            return {}
        async with self._sessions() as session:
            return await repository.patient_wards(session, patient_ids)

    async def has_ward(self, organisation_id: str, ward_id: str) -> bool:
        """Tell whether the organisation has this ward."""
        async with self._sessions() as session:
            found = await repository.wards_in_organisation(session, organisation_id, [ward_id])
        return ward_id in found

    async def cards(self, patient_ids: Sequence[str]) -> list[PatientCard]:
        """Return what may be shown of each known patient, in one look-up."""
        async with self._sessions() as session:
            found = await repository.patients_by_ids(session, patient_ids)
        return [_card(patient) for patient in found]

    async def search(
        self,
        organisation_id: str,
        query: PatientQuery,
        *,
        limit: int,
        after: tuple[dt.datetime, str] | None,
    ) -> list[PatientCard]:
        """Return up to `limit` of the organisation's patients matching `query`, newest first,
        after a (created_at, id) position."""
        async with self._sessions() as session:
            found = await repository.search_patients(
                session, organisation_id, query, limit=limit, after=after
            )
        return [_card(patient) for patient in found]


def _card(patient: Patient) -> PatientCard:
    return PatientCard(
        id=patient.id,
        organisation_id=patient.organisation_id,
        ward_id=patient.ward_id,
        identifier_system=patient.identifier_system,
        identifier_value=patient.identifier_value,
        family_name=patient.family_name,
        given_name=patient.given_name,
        birth_date=patient.birth_date,
        created_at=patient.created_at,
    )


class SqlCareDirectory:
    """Answer whose clinical data a user may see, fresh on every request.

    Not cached: a ward change, a disabled account or an expiring break-glass grant must take
    effect on the very next request, and the query is two indexed lookups.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def scope(self, user_id: str, organisation_id: str, role: str) -> CareScope:
        """Return the user's current care scope."""
        if role == Role.ADMIN:
            return EVERYONE
        if role not in (Role.CLINICIAN, Role.NURSE):
            return NOBODY
        async with self._sessions() as session:
            ids = await repository.care_scope_patient_ids(
                session, user_id, organisation_id, self._clock.now()
            )
        return CareScope(whole_organisation=False, patient_ids=ids)

    async def is_member(self, user_id: str, organisation_id: str) -> bool:
        """Tell whether the user is an active user of the organisation."""
        async with self._sessions() as session:
            user = await session.get(UserAccount, user_id)
        return user is not None and user.is_active and user.organisation_id == organisation_id

    async def ward_members(self, organisation_id: str, ward_id: str) -> list[str]:
        """Return the ids of the active users in the ward's care team."""
        async with self._sessions() as session:
            return await repository.ward_member_ids(session, organisation_id, ward_id)

    async def admins(self, organisation_id: str) -> list[str]:
        """Return the ids of the organisation's active admins."""
        query = (
            select(UserAccount.id)
            .where(
                UserAccount.organisation_id == organisation_id,
                UserAccount.role == Role.ADMIN.value,
                UserAccount.is_active.is_(True),
            )
            .order_by(UserAccount.id)
        )
        async with self._sessions() as session:
            return list((await session.scalars(query)).all())
