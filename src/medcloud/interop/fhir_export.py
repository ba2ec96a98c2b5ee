"""Bulk Data export of one patient or one ward (a Group), answered synchronously as NDJSON.

The Bulk Data IG's kick-off answers 202 and the files come later; medcloud's exports are one
patient or one care team, small enough to stream at once, so the kick-off request itself
answers `application/fhir+ndjson` (the CapabilityStatement says so). Rows are streamed a page
at a time: memory stays bounded however long the history. Everything that can refuse the
export (not found, out of scope, a type the role may not read) is checked before the first
byte, while an error can still be answered; each patient's export is audited before any of
their data leaves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence

from medcloud.interop import fhir, fhir_observations
from medcloud.interop.fhir_access import (
    Sources,
    audit,
    care_scope,
    device_record,
    patient_in_scope,
    patient_record,
    visible_patients,
)
from medcloud.interop.fhir_search import Export
from medcloud.platform.directory import (
    CareScope,
    DeviceQuery,
    PatientCard,
    PatientQuery,
    ReadingQuery,
)
from medcloud.platform.errors import NotFound, OutOfScope
from medcloud.platform.policy import Action, authorize
from medcloud.platform.security import UserPrincipal
from medcloud.platform.uow import UnitOfWork

NDJSON = "application/fhir+ndjson"
_ACTIONS = {
    "Patient": Action.PATIENT_READ,
    "Device": Action.DEVICE_READ,
    "Observation": Action.READINGS_READ,
}
_PATIENTS_PER_PAGE = 100
_DEVICES_PER_PAGE = 100
_OBSERVATIONS_PER_PAGE = 500


async def export_patient(
    *,
    uow_factory: Callable[[], UnitOfWork],
    sources: Sources,
    principal: UserPrincipal,
    patient_id: str,
    export: Export,
) -> AsyncIterator[bytes]:
    """Check, audit and start the export of one patient in the user's care scope."""
    _authorise(principal, export.types)
    card = await patient_in_scope(sources, principal, patient_id)
    await _audit(uow_factory(), principal, card, export)
    visible = await visible_patients(sources, principal)
    return _lines(sources, principal, [card], export, visible)


async def export_ward(
    *,
    uow_factory: Callable[[], UnitOfWork],
    sources: Sources,
    principal: UserPrincipal,
    ward_id: str,
    export: Export,
) -> AsyncIterator[bytes]:
    """Check and start the export of a ward's patients, to its care team or an admin."""
    _authorise(principal, export.types)
    if not await sources.patients.has_ward(principal.organisation_id, ward_id):
        raise NotFound("group not found")
    scope = await care_scope(sources, principal)
    if not scope.whole_organisation and principal.user_id not in await sources.care.ward_members(
        principal.organisation_id, ward_id
    ):
        raise OutOfScope("group not found")
    visible = await visible_patients(sources, principal)
    return _ward_lines(uow_factory, sources, principal, ward_id, scope, export, visible)


def _authorise(principal: UserPrincipal, types: frozenset[str]) -> None:
    for kind in sorted(types):
        authorize(principal, _ACTIONS[kind])


async def _ward_lines(
    uow_factory: Callable[[], UnitOfWork],
    sources: Sources,
    principal: UserPrincipal,
    ward_id: str,
    scope: CareScope,
    export: Export,
    visible: frozenset[str] | None,
) -> AsyncIterator[bytes]:
    query = PatientQuery(
        ward_id=ward_id, patients=None if scope.whole_organisation else scope.patient_ids
    )
    after = None
    while True:
        cards = await sources.patients.search(
            principal.organisation_id, query, limit=_PATIENTS_PER_PAGE, after=after
        )
        for card in cards:
            await _audit(uow_factory(), principal, card, export)
            async for line in _lines(sources, principal, [card], export, visible):
                yield line
        if len(cards) < _PATIENTS_PER_PAGE:
            return
        after = (cards[-1].created_at, cards[-1].id)


async def _lines(
    sources: Sources,
    principal: UserPrincipal,
    cards: Sequence[PatientCard],
    export: Export,
    visible: frozenset[str] | None,
) -> AsyncIterator[bytes]:
    for card in cards:
        if "Patient" in export.types:
            yield fhir.ndjson([fhir.patient(patient_record(card))])
        if "Device" in export.types:
            async for line in _devices(sources, principal, card, visible):
                yield line
        if "Observation" in export.types:
            async for line in _observations(sources, principal, card, export):
                yield line


async def _devices(
    sources: Sources,
    principal: UserPrincipal,
    card: PatientCard,
    visible: frozenset[str] | None,
) -> AsyncIterator[bytes]:
    # The devices assigned to the patient now: an earlier one names its current patient, who
    # may be outside this export's reach.
    query = DeviceQuery(patient_id=card.id, patients=visible)
    after = None
    while True:
        found = await sources.devices.search(
            principal.organisation_id, query, limit=_DEVICES_PER_PAGE, after=after
        )
        if found:
            yield fhir.ndjson([fhir.device(device_record(device)) for device in found])
        if len(found) < _DEVICES_PER_PAGE:
            return
        after = (found[-1].created_at, found[-1].id)


async def _observations(
    sources: Sources, principal: UserPrincipal, card: PatientCard, export: Export
) -> AsyncIterator[bytes]:
    # _since: what was taken since (medcloud keeps no last-updated time of a reading apart).
    query = ReadingQuery(
        organisation_id=principal.organisation_id, patient_id=card.id, start=export.since
    )
    position = None
    while True:
        placed, more = await fhir_observations.page(
            sources.readings,
            query,
            matches=lambda _observation: True,
            newest_first=False,
            count=_OBSERVATIONS_PER_PAGE,
            after=position,
        )
        if placed:
            yield fhir.ndjson([observation for _at, observation in placed])
        if not more:
            return
        at, last = placed[-1]
        position = (at, last.id or "")


async def _audit(
    uow: UnitOfWork, principal: UserPrincipal, card: PatientCard, export: Export
) -> None:
    await audit(
        uow,
        principal,
        "patient.export",
        "patient",
        card.id,
        patient_id=card.id,
        resources=sorted(export.types),
    )
