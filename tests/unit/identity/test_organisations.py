"""Organisations, their first admin and their wards, over the fake unit of work."""

from __future__ import annotations

from typing import cast

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.config import Settings
from medcloud.identity import service
from medcloud.identity.events import UserCreated
from medcloud.identity.models import Organisation, UserAccount, Ward
from medcloud.identity.schemas import WardCreate
from medcloud.platform.audit import ActorType
from medcloud.platform.errors import Conflict, Invalid
from medcloud.platform.security import verify_password
from tests.unit.identity.fakes import (
    ALICE,
    MALLORY,
    NOW,
    PASSWORD,
    FakeUnitOfWork,
    InMemoryRepository,
)

FOUNDER = "Fiona.Founder@northgate.example"


async def found(
    uow: FakeUnitOfWork,
    *,
    admin_email: str = FOUNDER,
    admin_password: str = PASSWORD,
    min_password_length: int | None = 12,
) -> tuple[str, str]:
    return await service.create_organisation(
        uow_factory=uow.factory,
        name="Northgate",
        admin_email=admin_email,
        admin_password=admin_password,
        min_password_length=min_password_length,
    )


# --- wards -------------------------------------------------------------------------------------


async def test_alice_creates_a_ward_and_it_is_audited(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    ward = await service.create_ward(
        uow=uow.port, principal=ALICE.principal, cmd=WardCreate(name="  Intensive Care ")
    )
    assert (ward.name, ward.created_at) == ("Intensive Care", NOW)
    (row,) = [w for w in st_marys.all(Ward) if w.id == ward.id]
    assert row.organisation_id == ALICE.organisation_id
    (record,) = uow.audited(action="ward.create")
    assert (record.actor_id, record.object_type, record.object_id) == (ALICE.name, "ward", ward.id)


async def test_a_ward_name_is_taken_within_one_organisation_only(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    count = len(st_marys.all(Ward))
    with pytest.raises(Conflict) as refused:
        await service.create_ward(
            uow=uow.port, principal=ALICE.principal, cmd=WardCreate(name="Oncology")
        )
    assert [e.field for e in refused.value.errors] == ["name"]
    assert len(st_marys.all(Ward)) == count
    assert uow.committed == []

    await service.create_ward(
        uow=uow.port, principal=MALLORY.principal, cmd=WardCreate(name="Oncology")
    )


async def test_each_organisation_lists_its_own_wards_by_name(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    session = cast(AsyncSession, uow.session)
    ours = await service.list_wards(session=session, principal=ALICE.principal)
    theirs = await service.list_wards(session=session, principal=MALLORY.principal)
    assert [w.name for w in ours.items] == ["Cardiology", "Oncology"]
    assert [w.name for w in theirs.items] == ["Cardiology"]


# --- organisations -----------------------------------------------------------------------------


async def test_an_organisation_is_created_with_its_first_admin(
    repo: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    organisation_id, admin_id = await found(uow)

    (organisation,) = repo.all(Organisation)
    (admin,) = repo.all(UserAccount)
    assert (organisation.id, organisation.name) == (organisation_id, "Northgate")
    assert (admin.id, admin.organisation_id, admin.email, admin.role, admin.is_active) == (
        admin_id,
        organisation_id,
        FOUNDER.lower(),
        "admin",
        True,
    )
    assert admin.password_hash is not None
    assert await verify_password(admin.password_hash, PASSWORD)
    assert uow.published(UserCreated) == [
        UserCreated(organisation_id=organisation_id, user_id=admin_id, role="admin")
    ]
    (record,) = uow.audited(action="organisation.create")
    assert (record.actor_type, record.organisation_id, record.object_id) == (
        ActorType.ANONYMOUS,
        organisation_id,
        organisation_id,
    )


async def test_a_founders_password_must_meet_the_policy(
    repo: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    with pytest.raises(Invalid) as refused:
        await found(uow, admin_password="fiona.founder-2026")
    assert [e.field for e in refused.value.errors] == ["password"]
    assert repo.rows == []
    assert uow.committed == []


async def test_an_email_in_use_cannot_found_another_organisation(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    count = len(st_marys.all(Organisation))
    with pytest.raises(Conflict) as refused:
        await found(uow, admin_email=ALICE.email.upper())
    assert [e.field for e in refused.value.errors] == ["email"]
    assert len(st_marys.all(Organisation)) == count
    assert uow.committed == []


async def test_the_operators_configured_password_is_not_held_to_the_policy(
    repo: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    await found(uow, admin_password="changeme", min_password_length=None)
    assert len(repo.all(UserAccount)) == 1


async def test_the_bootstrap_admin_is_created_once_on_an_empty_system(
    repo: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    settings = Settings(
        bootstrap_admin_email=FOUNDER,
        bootstrap_admin_password=SecretStr("changeme"),
        bootstrap_organisation="Northgate",
    )
    await service.ensure_bootstrap_admin(uow_factory=uow.factory, settings=settings)
    await service.ensure_bootstrap_admin(uow_factory=uow.factory, settings=settings)

    assert [o.name for o in repo.all(Organisation)] == ["Northgate"]
    assert [u.email for u in repo.all(UserAccount)] == [FOUNDER.lower()]


async def test_no_bootstrap_admin_without_both_an_email_and_a_password(
    repo: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    for settings in (Settings(bootstrap_admin_email=FOUNDER), Settings()):
        await service.ensure_bootstrap_admin(uow_factory=uow.factory, settings=settings)
    assert repo.rows == []
