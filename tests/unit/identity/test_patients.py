"""The patient registry as use cases over the fake unit of work: registration, care-scoped reads
and moves, and break-glass.

Care scopes come from the real `SqlCareDirectory` reading the fake repository: admins see their
whole organisation, clinicians and nurses their wards' patients and unexpired break-glass grants,
technicians and auditors nobody.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pydantic
import pytest

from medcloud.config import Settings
from medcloud.identity import patients
from medcloud.identity.directory import SqlCareDirectory
from medcloud.identity.models import BreakGlassGrant, Patient, WardMember
from medcloud.identity.schemas import (
    BreakGlassRead,
    BreakGlassRequest,
    PatientCreate,
    PatientRead,
    PatientUpdate,
)
from medcloud.platform.audit import Outcome
from medcloud.platform.clock import FrozenClock
from medcloud.platform.errors import Conflict, Invalid, NotFound, OutOfScope
from tests.unit.identity.fakes import (
    ALICE,
    AUDREY,
    BOB,
    CARDIOLOGY,
    CAROL,
    MALLORY,
    MALLORY_CLINICIAN,
    MALLORY_WARD,
    MALLORYS_PATIENT,
    NHS_NUMBER,
    NINA,
    NOW,
    OLIVE,
    ONCOLOGY,
    PETER,
    ST_MARYS,
    TESS,
    FakeUnitOfWork,
    InMemoryRepository,
    Member,
    care_directory,
)

REASON = "arrest call on the cardiology corridor, bob is the nearest clinician"


@pytest.fixture
def care(st_marys: InMemoryRepository, clock: FrozenClock) -> SqlCareDirectory:
    return care_directory(st_marys, clock)


async def register(uow: FakeUnitOfWork, *, by: Member = NINA, **fields: Any) -> PatientRead:
    cmd = PatientCreate.model_validate(
        {
            "identifier_system": NHS_NUMBER,
            "identifier_value": "P-3003",
            "family_name": "Pritchard",
            "given_name": "Pam",
            "birth_date": "1948-02-29",
            "ward_id": CARDIOLOGY,
        }
        | fields
    )
    return await patients.create_patient(uow=uow.port, principal=by.principal, cmd=cmd)


async def read(
    uow: FakeUnitOfWork, care: SqlCareDirectory, who: Member, patient_id: str
) -> PatientRead:
    return await patients.get_patient(
        uow=uow.port, care=care, principal=who.principal, patient_id=patient_id
    )


async def move(
    uow: FakeUnitOfWork, care: SqlCareDirectory, who: Member, patient_id: str, ward: str | None
) -> PatientRead:
    return await patients.update_patient(
        uow=uow.port,
        care=care,
        principal=who.principal,
        patient_id=patient_id,
        cmd=PatientUpdate(ward_id=ward),
    )


async def break_glass(
    uow: FakeUnitOfWork, settings: Settings, who: Member, patient_id: str
) -> BreakGlassRead:
    return await patients.break_glass(
        uow=uow.port,
        principal=who.principal,
        settings=settings,
        patient_id=patient_id,
        reason=REASON,
    )


def stored(repo: InMemoryRepository, patient_id: str) -> Patient:
    (patient,) = [p for p in repo.all(Patient) if p.id == patient_id]
    return patient


# --- registration ------------------------------------------------------------------------------


async def test_nina_registers_a_patient_in_her_organisation_and_it_is_audited(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    pam = await register(uow)
    row = stored(st_marys, pam.id)
    assert (row.organisation_id, row.ward_id, row.created_at) == (ST_MARYS, CARDIOLOGY, NOW)
    assert (pam.family_name, pam.birth_date) == ("Pritchard", dt.date(1948, 2, 29))
    (record,) = uow.audited(action="patient.create")
    assert (record.actor_id, record.object_id, record.patient_id) == (NINA.name, pam.id, pam.id)


async def test_a_patient_may_be_registered_in_no_ward(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    pam = await register(uow, ward_id=None)
    assert stored(st_marys, pam.id).ward_id is None


async def test_an_identifier_is_taken_within_one_organisation_only(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    count = len(st_marys.all(Patient))
    with pytest.raises(Conflict) as refused:
        await register(uow, identifier_value="P-1001")  # Peter's
    assert [e.field for e in refused.value.errors] == ["identifier_value"]
    assert len(st_marys.all(Patient)) == count
    assert uow.committed == []

    # The same value in another identifier system, or in another organisation, is someone else.
    await register(uow, identifier_value="P-1001", identifier_system="urn:oid:1.2.3")
    await register(uow, by=MALLORY, identifier_value="P-2002", ward_id=MALLORY_WARD)  # Olive's


async def test_nina_registers_patients_only_into_her_own_ward_and_alice_into_any(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    count = len(st_marys.all(Patient))
    with pytest.raises(Invalid) as refused:
        await register(uow, ward_id=ONCOLOGY)
    assert [e.field for e in refused.value.errors] == ["ward_id"]
    assert len(st_marys.all(Patient)) == count
    assert uow.committed == []

    placed = await register(uow, by=ALICE, ward_id=ONCOLOGY)
    assert stored(st_marys, placed.id).ward_id == ONCOLOGY


@pytest.mark.parametrize("ward", [MALLORY_WARD, "ward-nowhere"])
async def test_a_patient_is_placed_only_in_a_ward_of_the_organisation(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, ward: str
) -> None:
    count = len(st_marys.all(Patient))
    with pytest.raises(Invalid) as refused:
        await register(uow, ward_id=ward)
    assert [e.field for e in refused.value.errors] == ["ward_id"]
    assert len(st_marys.all(Patient)) == count
    assert uow.committed == []


# --- reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "patient_id", "visible"),
    [
        (CAROL, PETER, True),
        (NINA, PETER, True),
        (CAROL, OLIVE, False),
        (BOB, OLIVE, True),
        (BOB, PETER, False),
        (ALICE, OLIVE, True),
        (TESS, PETER, False),
        (AUDREY, PETER, False),
        (ALICE, MALLORYS_PATIENT, False),
        (MALLORY, PETER, False),
        (MALLORY_CLINICIAN, MALLORYS_PATIENT, True),
    ],
)
async def test_a_patient_is_read_only_within_the_readers_care_scope_and_every_read_is_audited(
    st_marys: InMemoryRepository,
    uow: FakeUnitOfWork,
    care: SqlCareDirectory,
    who: Member,
    patient_id: str,
    visible: bool,
) -> None:
    if not visible:
        with pytest.raises(NotFound):
            await read(uow, care, who, patient_id)
        assert uow.committed == []
        return
    patient = await read(uow, care, who, patient_id)
    assert patient.id == patient_id
    (record,) = uow.audited(action="patient.read")
    assert (record.actor_id, record.organisation_id, record.patient_id, record.outcome) == (
        who.name,
        who.organisation_id,
        patient_id,
        Outcome.SUCCESS,
    )


async def test_a_patient_outside_the_care_teams_answers_exactly_as_one_that_does_not_exist(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, care: SqlCareDirectory
) -> None:
    with pytest.raises(OutOfScope) as outside:
        await read(uow, care, CAROL, OLIVE)
    with pytest.raises(NotFound) as absent:
        await read(uow, care, CAROL, "patient-nobody")
    assert (outside.value.status, outside.value.detail) == (
        absent.value.status,
        absent.value.detail,
    )


@pytest.mark.parametrize("who", [TESS, AUDREY])
async def test_technicians_and_auditors_see_no_patient_even_as_members_of_a_ward(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, care: SqlCareDirectory, who: Member
) -> None:
    st_marys.put(WardMember(user_id=who.name, ward_id=CARDIOLOGY))
    with pytest.raises(NotFound):
        await read(uow, care, who, PETER)
    page = await patients.list_patients(
        uow=uow.port, care=care, principal=who.principal, limit=10, cursor=None
    )
    assert page.items == []


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        (ALICE, [OLIVE, PETER]),
        (CAROL, [PETER]),
        (BOB, [OLIVE]),
        (TESS, []),
        (MALLORY, [MALLORYS_PATIENT]),
    ],
)
async def test_the_patient_list_holds_the_care_scope_newest_first_and_is_audited(
    st_marys: InMemoryRepository,
    uow: FakeUnitOfWork,
    care: SqlCareDirectory,
    who: Member,
    expected: list[str],
) -> None:
    page = await patients.list_patients(
        uow=uow.port, care=care, principal=who.principal, limit=10, cursor=None
    )
    assert ([p.id for p in page.items], page.next_cursor) == (expected, None)
    (record,) = uow.audited(action="patient.list")
    assert (record.actor_id, record.detail) == (who.name, {"count": len(expected)})


async def test_the_patient_list_pages_with_a_cursor_and_audits_what_each_page_showed(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, care: SqlCareDirectory
) -> None:
    first = await patients.list_patients(
        uow=uow.port, care=care, principal=ALICE.principal, limit=1, cursor=None
    )
    assert [p.id for p in first.items] == [OLIVE]
    assert first.next_cursor is not None
    second = await patients.list_patients(
        uow=uow.port, care=care, principal=ALICE.principal, limit=1, cursor=first.next_cursor
    )
    assert ([p.id for p in second.items], second.next_cursor) == ([PETER], None)
    assert [r.detail for r in uow.audited(action="patient.list")] == [{"count": 1}] * 2


async def test_a_cursor_this_server_did_not_issue_is_invalid(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, care: SqlCareDirectory
) -> None:
    with pytest.raises(Invalid) as refused:
        await patients.list_patients(
            uow=uow.port, care=care, principal=ALICE.principal, limit=1, cursor="not-a-cursor"
        )
    assert [e.field for e in refused.value.errors] == ["query.cursor"]


# --- moving ------------------------------------------------------------------------------------


async def test_nina_moves_peter_to_oncology_and_with_him_out_of_her_care(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, care: SqlCareDirectory
) -> None:
    moved = await move(uow, care, NINA, PETER, ONCOLOGY)
    assert moved.ward_id == stored(st_marys, PETER).ward_id == ONCOLOGY
    (record,) = uow.audited(action="patient.update")
    assert (record.actor_id, record.patient_id) == (NINA.name, PETER)

    with pytest.raises(NotFound):
        await read(uow, care, NINA, PETER)
    assert (await read(uow, care, BOB, PETER)).ward_id == ONCOLOGY


async def test_a_patient_may_be_taken_out_of_every_ward(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, care: SqlCareDirectory
) -> None:
    await move(uow, care, ALICE, OLIVE, None)
    assert stored(st_marys, OLIVE).ward_id is None


async def test_a_patient_outside_the_movers_care_cannot_be_moved(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, care: SqlCareDirectory
) -> None:
    with pytest.raises(NotFound):
        await move(uow, care, NINA, OLIVE, CARDIOLOGY)
    with pytest.raises(NotFound):
        await move(uow, care, MALLORY, PETER, MALLORY_WARD)
    assert (stored(st_marys, OLIVE).ward_id, stored(st_marys, PETER).ward_id) == (
        ONCOLOGY,
        CARDIOLOGY,
    )
    assert uow.committed == []


async def test_a_patient_is_moved_only_to_a_ward_of_the_organisation(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, care: SqlCareDirectory
) -> None:
    with pytest.raises(Invalid) as refused:
        await move(uow, care, ALICE, PETER, MALLORY_WARD)
    assert [e.field for e in refused.value.errors] == ["ward_id"]
    assert stored(st_marys, PETER).ward_id == CARDIOLOGY
    assert uow.committed == []


# --- break-glass -------------------------------------------------------------------------------


async def test_break_glass_grants_bob_a_bounded_time_and_records_why(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    granted = await break_glass(uow, settings, BOB, PETER)

    until = NOW + dt.timedelta(minutes=settings.identity.break_glass_minutes)
    assert (granted.patient_id, granted.granted_at, granted.expires_at) == (PETER, NOW, until)
    (grant,) = st_marys.all(BreakGlassGrant)
    assert (grant.id, grant.user_id, grant.organisation_id, grant.patient_id, grant.reason) == (
        granted.id,
        BOB.name,
        BOB.organisation_id,
        PETER,
        REASON,
    )
    (record,) = uow.audited(action="patient.break_glass")
    assert (record.actor_id, record.object_id, record.patient_id) == (BOB.name, PETER, PETER)
    assert record.detail == {"reason": REASON, "expires_at": until.isoformat()}


async def test_break_glass_opens_the_patient_only_until_the_grant_expires(
    st_marys: InMemoryRepository,
    uow: FakeUnitOfWork,
    care: SqlCareDirectory,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    with pytest.raises(NotFound):
        await read(uow, care, BOB, PETER)
    await break_glass(uow, settings, BOB, PETER)

    clock.advance(minutes=settings.identity.break_glass_minutes - 1)
    assert (await read(uow, care, BOB, PETER)).id == PETER
    page = await patients.list_patients(
        uow=uow.port, care=care, principal=BOB.principal, limit=10, cursor=None
    )
    assert {p.id for p in page.items} == {OLIVE, PETER}
    with pytest.raises(NotFound):
        await read(uow, care, CAROL, OLIVE)  # the grant is bob's alone

    clock.advance(minutes=1)
    with pytest.raises(NotFound):
        await read(uow, care, BOB, PETER)


@pytest.mark.parametrize("patient_id", [MALLORYS_PATIENT, "patient-nobody"])
async def test_break_glass_never_reaches_outside_the_organisation(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings, patient_id: str
) -> None:
    with pytest.raises(NotFound):
        await break_glass(uow, settings, BOB, patient_id)
    assert st_marys.all(BreakGlassGrant) == []
    assert uow.committed == []


@pytest.mark.parametrize("reason", ["", "urgent", "   urgent!   "])
def test_break_glass_needs_a_reason_of_some_words(reason: str) -> None:
    with pytest.raises(pydantic.ValidationError) as refused:
        BreakGlassRequest(reason=reason)
    assert [e["loc"] for e in refused.value.errors()] == [("reason",)]
    assert BreakGlassRequest(reason=f"  {REASON}  ").reason == REASON
