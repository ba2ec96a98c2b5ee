"""Use cases of the identity context."""

from __future__ import annotations

import uuid

import structlog

from medcloud.config import Settings
from medcloud.identity import repository
from medcloud.identity.events import UserCreated
from medcloud.identity.models import Organisation, UserAccount
from medcloud.identity.schemas import TokenRead, UserRead
from medcloud.platform.errors import NotFound, Unauthorized
from medcloud.platform.security import (
    Role,
    TokenService,
    UserPrincipal,
    hash_password,
    verify_password,
)
from medcloud.platform.uow import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

# Verified against when the email is unknown, so that both failures take the same time.
_ABSENT_USER_HASH: str | None = None


async def issue_token(
    *, uow: UnitOfWork, tokens: TokenService, email: str, password: str
) -> TokenRead:
    """Exchange an email and password for an access token."""
    global _ABSENT_USER_HASH  # noqa: PLW0603  (computed lazily: no hashing at import time)
    async with uow:
        user = await repository.get_user_by_email(uow.session, email)
    if user is None:
        _ABSENT_USER_HASH = _ABSENT_USER_HASH or await hash_password(uuid.uuid4().hex)
        await verify_password(_ABSENT_USER_HASH, password)
        raise Unauthorized("wrong email or password")
    if not user.is_active or not await verify_password(user.password_hash, password):
        raise Unauthorized("wrong email or password")
    principal = UserPrincipal(user.id, user.organisation_id, Role(user.role))
    return TokenRead(
        access_token=tokens.issue(principal),
        expires_in=int(tokens.lifetime.total_seconds()),
    )


async def get_user(*, uow: UnitOfWork, principal: UserPrincipal, user_id: str) -> UserRead:
    """Return a user of the principal's organisation."""
    async with uow:
        user = await repository.get_user(uow.session, user_id)
    if user is None or user.organisation_id != principal.organisation_id:
        raise NotFound("user not found")
    return _read(user)


async def ensure_bootstrap_admin(*, uow_factory: UnitOfWorkFactory, settings: Settings) -> None:
    """Create the first organisation and its admin from settings, once, on an empty system."""
    email, password = settings.bootstrap_admin_email, settings.bootstrap_admin_password
    if not email or password is None:
        return
    async with uow_factory() as uow:
        if await repository.count_users(uow.session) > 0:
            return
        organisation = await repository.first_organisation(uow.session)
        now = uow.clock.now()
        if organisation is None:
            organisation = Organisation(
                id=str(uuid.uuid4()), name=settings.bootstrap_organisation, created_at=now
            )
            uow.session.add(organisation)
        user = UserAccount(
            id=str(uuid.uuid4()),
            organisation_id=organisation.id,
            email=email.lower(),
            password_hash=await hash_password(password.get_secret_value()),
            role=Role.ADMIN.value,
            is_active=True,
            created_at=now,
        )
        uow.session.add(user)
        uow.publish(UserCreated(organisation_id=organisation.id, user_id=user.id, role=user.role))
        await uow.commit()
    log.info("identity.bootstrap_admin_created", user_id=user.id)


def _read(user: UserAccount) -> UserRead:
    return UserRead(
        id=user.id,
        organisation_id=user.organisation_id,
        email=user.email,
        role=Role(user.role),
        is_active=user.is_active,
    )
