"""Staff accounts as use cases over the fake unit of work: invitations, roles, wards, disabling.

Who may call these at all (admins: `Action.USER_MANAGE`) is the route's business and is checked
by the integration access matrix; what is checked here is what the use cases themselves refuse,
record and publish.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.config import Settings
from medcloud.identity import service, users
from medcloud.identity.events import UserCreated
from medcloud.identity.models import Invitation, RefreshToken, UserAccount, WardMember
from medcloud.identity.schemas import UserInvite, UserInvited, UserRead, UserUpdate
from medcloud.platform.audit import ActorType, AuditRecorded
from medcloud.platform.cache import MemoryCache
from medcloud.platform.errors import Conflict, Forbidden, Invalid, NotFound
from medcloud.platform.security import Role, verify_password
from tests.unit.identity.fakes import (
    ALICE,
    AUDREY,
    BOB,
    CARDIOLOGY,
    CAROL,
    MALLORY,
    MALLORY_WARD,
    NINA,
    NOW,
    ONCOLOGY,
    TESS,
    FakeUnitOfWork,
    InMemoryRepository,
    Member,
)

NOAH = "Noah.Nurse@stmary.example"
CHOSEN = "tidal-granite-orchard-9"


async def invite(
    uow: FakeUnitOfWork, settings: Settings, *, by: Member = ALICE, **fields: Any
) -> UserInvited:
    cmd = UserInvite.model_validate(
        {"email": NOAH, "role": "nurse", "ward_ids": [CARDIOLOGY]} | fields
    )
    return await users.invite_user(uow=uow.port, principal=by.principal, settings=settings, cmd=cmd)


async def update(
    uow: FakeUnitOfWork, who: Member, *, by: Member = ALICE, **fields: Any
) -> UserRead:
    return await users.update_user(
        uow=uow.port,
        cache=MemoryCache(),
        settings=Settings(),
        principal=by.principal,
        user_id=who.name,
        cmd=UserUpdate.model_validate(fields),
    )


def user(repo: InMemoryRepository, user_id: str) -> UserAccount:
    (found,) = [u for u in repo.all(UserAccount) if u.id == user_id]
    return found


def session_of(member: Member, family: str) -> RefreshToken:
    return RefreshToken(
        id=f"{member.name}-{family}",
        family_id=family,
        user_id=member.name,
        token_hash=f"hash-{member.name}-{family}",
        issued_at=NOW,
        expires_at=NOW + dt.timedelta(minutes=30),
        spent_at=None,
        revoked_at=None,
    )


# --- invitations -------------------------------------------------------------------------------


async def test_alice_invites_a_nurse_who_has_no_password_until_she_accepts(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    invited = await invite(uow, settings)

    noah = user(st_marys, invited.id)
    assert (noah.email, noah.organisation_id, noah.role) == (
        NOAH.lower(),
        ALICE.organisation_id,
        "nurse",
    )
    assert noah.password_hash is None
    assert invited.ward_ids == [CARDIOLOGY]
    assert invited.invitation_token.startswith(users.INVITATION_PREFIX)
    (invitation,) = st_marys.all(Invitation)
    assert invitation.user_id == noah.id
    assert invitation.token_hash == service.digest(invited.invitation_token)  # never the token
    hours = settings.identity.invitation_hours
    assert invitation.expires_at == invited.invitation_expires_at == NOW + dt.timedelta(hours=hours)
    assert uow.published(UserCreated) == [
        UserCreated(organisation_id=ALICE.organisation_id, user_id=noah.id, role="nurse")
    ]
    (record,) = uow.audited(action="user.create")
    assert (record.actor_id, record.object_id, record.detail) == (
        ALICE.name,
        noah.id,
        {"role": "nurse"},
    )


@pytest.mark.parametrize(
    "email", ["NINA_NURSE@stmary.example", "mallory_other_org@mallory.example"]
)
async def test_an_email_in_use_anywhere_is_a_conflict_on_the_email_field(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings, email: str
) -> None:
    before = len(st_marys.all(UserAccount))
    with pytest.raises(Conflict) as refused:
        await invite(uow, settings, email=email)
    assert [e.field for e in refused.value.errors] == ["email"]
    assert len(st_marys.all(UserAccount)) == before
    assert uow.committed == []


async def test_only_the_organisations_own_wards_may_be_given(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    with pytest.raises(Invalid) as refused:
        await invite(uow, settings, ward_ids=[CARDIOLOGY, MALLORY_WARD, "ward-nowhere"])
    assert [e.field for e in refused.value.errors] == ["ward_ids.1", "ward_ids.2"]
    assert st_marys.all(Invitation) == []
    assert uow.committed == []


async def test_a_ward_given_twice_makes_one_membership(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    invited = await invite(uow, settings, ward_ids=[ONCOLOGY, ONCOLOGY])
    assert invited.ward_ids == [ONCOLOGY]
    assert [m.ward_id for m in st_marys.all(WardMember) if m.user_id == invited.id] == [ONCOLOGY]


async def test_an_invitation_sets_a_password_once(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    invited = await invite(uow, settings)
    await users.accept_invitation(
        uow=uow.port, settings=settings, token=invited.invitation_token, password=CHOSEN
    )

    noah = user(st_marys, invited.id)
    assert noah.password_hash is not None
    assert await verify_password(noah.password_hash, CHOSEN)
    (invitation,) = st_marys.all(Invitation)
    assert invitation.used_at == NOW
    (record,) = uow.audited(action="user.accept_invitation")
    assert (record.actor_id, record.organisation_id) == (noah.id, ALICE.organisation_id)

    with pytest.raises(NotFound):
        await users.accept_invitation(
            uow=uow.port, settings=settings, token=invited.invitation_token, password="x" + CHOSEN
        )
    assert await verify_password(noah.password_hash, CHOSEN)


async def test_an_invitation_expires_when_its_time_is_up(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    invited = await invite(uow, settings)
    uow.clock.advance(hours=settings.identity.invitation_hours)
    with pytest.raises(NotFound):
        await users.accept_invitation(
            uow=uow.port, settings=settings, token=invited.invitation_token, password=CHOSEN
        )
    assert user(st_marys, invited.id).password_hash is None


async def test_an_unknown_invitation_is_not_found(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    with pytest.raises(NotFound):
        await users.accept_invitation(
            uow=uow.port,
            settings=settings,
            token=users.INVITATION_PREFIX + "guess",
            password=CHOSEN,
        )
    assert uow.committed == []


@pytest.mark.parametrize(
    "password",
    ["short-9", "aaaaaaaaaaaaaaaa", "Password 1234", "noah.nurse-chose-this"],
    ids=["too short", "too few characters", "common", "the email's own name"],
)
async def test_a_weak_password_is_refused_on_the_password_field_and_the_invitation_stays_open(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings, password: str
) -> None:
    invited = await invite(uow, settings)
    with pytest.raises(Invalid) as refused:
        await users.accept_invitation(
            uow=uow.port, settings=settings, token=invited.invitation_token, password=password
        )
    assert [e.field for e in refused.value.errors] == ["password"]
    assert user(st_marys, invited.id).password_hash is None

    await users.accept_invitation(
        uow=uow.port, settings=settings, token=invited.invitation_token, password=CHOSEN
    )
    assert user(st_marys, invited.id).password_hash is not None


# --- reading -----------------------------------------------------------------------------------


async def test_users_are_read_within_the_organisation_only(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    nina = await users.get_user(uow=uow.port, principal=ALICE.principal, user_id=NINA.name)
    assert (nina.role, nina.ward_ids) == (Role.NURSE, [CARDIOLOGY])
    with pytest.raises(NotFound):
        await users.get_user(uow=uow.port, principal=MALLORY.principal, user_id=NINA.name)

    everyone = [m.name for m in (ALICE, CAROL, NINA, BOB, TESS, AUDREY)]
    session = cast(AsyncSession, uow.session)
    page = await users.list_users(
        session=session, principal=ALICE.principal, limit=100, cursor=None
    )
    assert [u.id for u in page.items] == everyone
    assert page.next_cursor is None
    # A page at a time, in the same order, each user once.
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await users.list_users(
            session=session, principal=ALICE.principal, limit=4, cursor=cursor
        )
        seen += [u.id for u in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == everyone


# --- changing ----------------------------------------------------------------------------------


async def test_alice_promotes_nina_and_the_audit_says_only_what_changed(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    read = await update(uow, NINA, role="clinician", is_active=True)
    assert read.role == Role.CLINICIAN
    assert user(st_marys, NINA.name).role == "clinician"
    (record,) = uow.audited(action="user.update")
    assert (record.actor_id, record.object_id) == (ALICE.name, NINA.name)
    assert record.detail == {"role": "clinician"}  # she was active already


async def test_disabling_a_user_ends_every_one_of_her_sessions_and_no_one_elses(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    st_marys.put(session_of(NINA, "ward-pc"), session_of(NINA, "phone"), session_of(CAROL, "pc"))
    uow.clock.advance(minutes=5)

    read = await update(uow, NINA, is_active=False)

    assert not read.is_active
    revoked = {t.id: t.revoked_at for t in st_marys.all(RefreshToken)}
    later = NOW + dt.timedelta(minutes=5)
    assert revoked == {
        "nina_nurse-ward-pc": later,
        "nina_nurse-phone": later,
        "carol_clinician-pc": None,
    }
    (record,) = uow.audited(action="user.update")
    assert record.detail == {"is_active": "false"}


async def test_a_user_moved_to_other_wards_leaves_her_old_ones(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    read = await update(uow, NINA, ward_ids=[ONCOLOGY, ONCOLOGY])
    assert read.ward_ids == [ONCOLOGY]
    assert [m.ward_id for m in st_marys.all(WardMember) if m.user_id == NINA.name] == [ONCOLOGY]
    (record,) = uow.audited(action="user.update")
    assert record.detail == {"wards": "1"}


async def test_an_unknown_ward_in_a_change_leaves_the_role_and_sessions_as_they_were(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    st_marys.put(session_of(NINA, "ward-pc"))
    with pytest.raises(Invalid) as refused:
        await update(uow, NINA, role="clinician", is_active=False, ward_ids=[MALLORY_WARD])
    assert [e.field for e in refused.value.errors] == ["ward_ids.0"]
    nina = user(st_marys, NINA.name)
    assert (nina.role, nina.is_active) == ("nurse", True)
    assert [t.revoked_at for t in st_marys.all(RefreshToken)] == [None]
    assert uow.committed == []


@pytest.mark.parametrize(
    "change",
    [{"is_active": False}, {"role": "clinician"}, {"role": "auditor", "is_active": True}],
)
async def test_an_admin_cannot_disable_or_demote_herself(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, change: dict[str, Any]
) -> None:
    with pytest.raises(Forbidden):
        await update(uow, ALICE, by=ALICE, **change)
    alice = user(st_marys, ALICE.name)
    assert (alice.role, alice.is_active) == ("admin", True)
    assert uow.committed == []


async def test_an_admin_may_change_her_own_wards_and_keep_her_role(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    read = await update(uow, ALICE, by=ALICE, role="admin", is_active=True, ward_ids=[CARDIOLOGY])
    assert (read.role, read.is_active, read.ward_ids) == (Role.ADMIN, True, [CARDIOLOGY])
    (record,) = uow.audited(action="user.update")
    assert record.detail == {"wards": "1"}


async def test_one_admin_may_demote_another(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    second = await invite(uow, settings, email="second.admin@stmary.example", role="admin")
    admin = Member(second.id, ALICE.organisation_id, Role.ADMIN)
    read = await update(uow, admin, role="auditor")
    assert read.role == Role.AUDITOR


async def test_a_user_of_another_organisation_cannot_be_changed(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    with pytest.raises(NotFound):
        await update(uow, MALLORY, is_active=False)
    with pytest.raises(NotFound):
        await update(uow, NINA, by=MALLORY, role="admin")
    assert user(st_marys, MALLORY.name).is_active
    assert user(st_marys, NINA.name).role == "nurse"
    assert uow.published(AuditRecorded) == []


async def test_the_audit_of_a_change_names_the_admin_as_a_user(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    await update(uow, BOB, role="nurse")
    (record,) = uow.audited(action="user.update")
    assert (record.actor_type, record.organisation_id, record.object_type) == (
        ActorType.USER,
        ALICE.organisation_id,
        "user",
    )
