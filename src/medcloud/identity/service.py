"""Use cases of the identity context: organisations and their first admin, and wards.

Signing in and sessions live in `sessions.py`, users and invitations in `users.py`, patients
and break-glass in `patients.py`; what they share is here.
"""

from __future__ import annotations

import hashlib
import uuid

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.config import Settings
from medcloud.identity import repository
from medcloud.identity.events import OrganisationCreated, UserCreated
from medcloud.identity.models import Organisation, UserAccount, Ward
from medcloud.identity.passwords import check_password
from medcloud.identity.schemas import WardCreate, WardPage, WardRead
from medcloud.platform.audit import audit_record
from medcloud.platform.errors import Conflict, FieldError, Invalid
from medcloud.platform.security import Role, UserPrincipal, hash_password
from medcloud.platform.uow import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)


def digest(secret: str) -> str:
    """Return the SHA-256 of `secret` in hex: tokens are stored, and emails audited, as this."""
    return hashlib.sha256(secret.encode()).hexdigest()


# --- wards -------------------------------------------------------------------------------------


async def create_ward(*, uow: UnitOfWork, principal: UserPrincipal, cmd: WardCreate) -> WardRead:
    """Create a care team."""
    now = uow.clock.now()
    async with uow:
        existing = await repository.list_wards(uow.session, principal.organisation_id)
        if any(ward.name == cmd.name for ward in existing):
            raise Conflict("a ward with this name exists", errors=[FieldError("name", "taken")])
        ward = Ward(
            id=str(uuid.uuid4()),
            organisation_id=principal.organisation_id,
            name=cmd.name,
            created_at=now,
        )
        uow.session.add(ward)
        uow.publish(
            audit_record(
                principal, "ward.create", occurred_at=now, object_type="ward", object_id=ward.id
            )
        )
        await uow.commit()
    return WardRead(id=ward.id, name=ward.name, created_at=ward.created_at)


async def list_wards(*, session: AsyncSession, principal: UserPrincipal) -> WardPage:
    """Return the organisation's care teams."""
    wards = await repository.list_wards(session, principal.organisation_id)
    return WardPage(items=[WardRead(id=w.id, name=w.name, created_at=w.created_at) for w in wards])


# --- bootstrap ---------------------------------------------------------------------------------


async def create_organisation(
    *,
    uow_factory: UnitOfWorkFactory,
    name: str,
    admin_email: str,
    admin_password: str,
    min_password_length: int | None = 12,
    bootstrap: bool = False,
) -> tuple[str, str]:
    """Create an organisation with its first admin; return (organisation id, admin id).

    `min_password_length=None` skips the password policy (for a password an operator set in
    configuration rather than a person chose). `bootstrap` marks the first organisation,
    created from settings, for what its deployment sets up with it (the demo's HL7 interface).
    """
    if min_password_length is not None:
        problems = check_password(admin_password, email=admin_email, min_length=min_password_length)
        if problems:
            raise Invalid("the admin password does not meet the policy", errors=problems)
    async with uow_factory() as uow:
        if await repository.get_user_by_email(uow.session, admin_email) is not None:
            raise Conflict(
                "a user with this email exists", errors=[FieldError("email", "already in use")]
            )
        now = uow.clock.now()
        organisation = Organisation(
            id=str(uuid.uuid4()), name=name, created_at=now, require_admin_mfa=False
        )
        uow.session.add(organisation)
        await uow.session.flush()
        user = UserAccount(
            id=str(uuid.uuid4()),
            organisation_id=organisation.id,
            email=admin_email.lower(),
            password_hash=await hash_password(admin_password),
            role=Role.ADMIN.value,
            is_active=True,
            created_at=now,
            failed_logins=0,
            mfa_enabled=False,
        )
        uow.session.add(user)
        uow.publish(OrganisationCreated(organisation_id=organisation.id, bootstrap=bootstrap))
        uow.publish(UserCreated(organisation_id=organisation.id, user_id=user.id, role=user.role))
        uow.publish(
            audit_record(
                None,
                "organisation.create",
                occurred_at=now,
                organisation_id=organisation.id,
                object_type="organisation",
                object_id=organisation.id,
            )
        )
        await uow.commit()
    return organisation.id, user.id


async def ensure_bootstrap_admin(*, uow_factory: UnitOfWorkFactory, settings: Settings) -> None:
    """Create the first organisation and its admin from settings, once, on an empty system."""
    email, password = settings.bootstrap_admin_email, settings.bootstrap_admin_password
    if not email or password is None:
        return
    async with uow_factory() as uow:
        if await repository.count_users(uow.session) > 0:
            return
    # The operator chose this password in configuration; the policy applies to people's own.
    try:
        await create_organisation(
            uow_factory=uow_factory,
            name=settings.bootstrap_organisation,
            admin_email=email,
            admin_password=password.get_secret_value(),
            min_password_length=None,
            bootstrap=True,
        )
    except (IntegrityError, Conflict):
        # Every identity process of a fresh deployment starts at once (API replicas, the
        # worker): one of them creates the admin, and the others find it made, before their
        # insert (Conflict) or at it (the unique email).
        async with uow_factory() as uow:
            if await repository.count_users(uow.session) == 0:
                raise
        log.info("identity.bootstrap_admin_created_elsewhere")
        return
    log.info("identity.bootstrap_admin_created")
