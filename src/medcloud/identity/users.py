"""Use cases of the organisation's staff: invitations, accounts, roles and ward membership."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.config import Settings
from medcloud.identity import repository, service, throttling
from medcloud.identity.events import UserCreated
from medcloud.identity.models import Invitation, UserAccount
from medcloud.identity.passwords import check_password
from medcloud.identity.schemas import UserInvite, UserInvited, UserPage, UserRead, UserUpdate
from medcloud.platform.audit import audit_record
from medcloud.platform.cache import Cache
from medcloud.platform.errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from medcloud.platform.paging import decode_cursor, page_of
from medcloud.platform.revocation import revoke_tokens
from medcloud.platform.security import Role, UserPrincipal, hash_password
from medcloud.platform.uow import UnitOfWork

INVITATION_PREFIX = "mci_"


async def invite_user(
    *, uow: UnitOfWork, principal: UserPrincipal, settings: Settings, cmd: UserInvite
) -> UserInvited:
    """Create a user without a password and an invitation through which they choose one."""
    token = INVITATION_PREFIX + secrets.token_urlsafe(32)
    now = uow.clock.now()
    expires = now + dt.timedelta(hours=settings.identity.invitation_hours)
    async with uow:
        if await repository.get_user_by_email(uow.session, cmd.email) is not None:
            raise Conflict(
                "a user with this email exists", errors=[FieldError("email", "already in use")]
            )
        await _check_wards(uow.session, principal.organisation_id, cmd.ward_ids)
        user = UserAccount(
            id=str(uuid.uuid4()),
            organisation_id=principal.organisation_id,
            email=cmd.email.lower(),
            password_hash=None,
            role=cmd.role.value,
            is_active=True,
            created_at=now,
            failed_logins=0,
            mfa_enabled=False,
        )
        uow.session.add(user)
        await uow.session.flush()
        await repository.set_wards(uow.session, user.id, cmd.ward_ids)
        uow.session.add(
            Invitation(
                id=str(uuid.uuid4()),
                user_id=user.id,
                token_hash=service.digest(token),
                expires_at=expires,
            )
        )
        uow.publish(
            UserCreated(organisation_id=user.organisation_id, user_id=user.id, role=user.role)
        )
        uow.publish(
            audit_record(
                principal,
                "user.create",
                occurred_at=now,
                object_type="user",
                object_id=user.id,
                detail={"role": user.role},
            )
        )
        await uow.commit()
    read = _user_read(user, list(dict.fromkeys(cmd.ward_ids)))
    return UserInvited(**read.model_dump(), invitation_token=token, invitation_expires_at=expires)


async def accept_invitation(
    *, uow: UnitOfWork, settings: Settings, token: str, password: str
) -> None:
    """Set the invited user's password, once."""
    now = uow.clock.now()
    async with uow:
        invitation = await repository.get_invitation(uow.session, service.digest(token))
        if invitation is None or invitation.used_at is not None or invitation.expires_at <= now:
            raise NotFound("no such invitation, or it has expired")
        user = await repository.get_user(uow.session, invitation.user_id)
        assert user is not None  # noqa: S101
        problems = check_password(
            password, email=user.email, min_length=settings.identity.password_min_length
        )
        if problems:
            raise Invalid("the password does not meet the policy", errors=problems)
        user.password_hash = await hash_password(password)
        invitation.used_at = now
        principal = UserPrincipal(user.id, user.organisation_id, Role(user.role))
        uow.publish(
            audit_record(
                principal,
                "user.accept_invitation",
                occurred_at=now,
                object_type="user",
                object_id=user.id,
            )
        )
        await uow.commit()


async def get_user(*, uow: UnitOfWork, principal: UserPrincipal, user_id: str) -> UserRead:
    """Return a user of the principal's organisation."""
    async with uow:
        user = await repository.get_user(uow.session, user_id)
        if user is None or user.organisation_id != principal.organisation_id:
            raise NotFound("user not found")
        wards = await repository.ward_ids_of(uow.session, [user.id])
    return _user_read(user, wards[user.id])


async def list_users(
    *, session: AsyncSession, principal: UserPrincipal, limit: int, cursor: str | None
) -> UserPage:
    """Return a page of the organisation's users, oldest first."""
    found = await repository.list_users(
        session,
        principal.organisation_id,
        limit=limit + 1,
        cursor=decode_cursor(cursor) if cursor else None,
    )
    users, next_cursor = page_of(found, limit, lambda u: (u.created_at, u.id))
    wards = await repository.ward_ids_of(session, [u.id for u in users])
    return UserPage(items=[_user_read(u, wards[u.id]) for u in users], next_cursor=next_cursor)


async def update_user(
    *,
    uow: UnitOfWork,
    cache: Cache,
    settings: Settings,
    principal: UserPrincipal,
    user_id: str,
    cmd: UserUpdate,
) -> UserRead:
    """Change a user's role, wards or whether they may sign in; disabling ends their sessions.

    Disabling or a new role also refuses the access tokens already issued (a role is in the
    token): the user signs in again, or refreshes into a token with the new role."""
    now = uow.clock.now()
    async with uow:
        user = await repository.get_user(uow.session, user_id)
        if user is None or user.organisation_id != principal.organisation_id:
            raise NotFound("user not found")
        if user.id == principal.user_id and (
            cmd.is_active is False or cmd.role not in (None, Role.ADMIN)
        ):
            raise Forbidden("admins cannot disable or demote themselves")
        changes: dict[str, str] = {}
        if cmd.role is not None and cmd.role.value != user.role:
            changes["role"] = cmd.role.value
            user.role = cmd.role.value
        if cmd.is_active is not None and cmd.is_active != user.is_active:
            changes["is_active"] = str(cmd.is_active).lower()
            user.is_active = cmd.is_active
            if not cmd.is_active:
                await repository.revoke_user_sessions(uow.session, user.id, now)
        if "role" in changes or "is_active" in changes:
            # Before the commit: a cache that cannot be reached fails the change, rather than
            # leaving the old role or account working for the tokens' remaining lifetime.
            lifetime = dt.timedelta(minutes=settings.access_token_minutes)
            await revoke_tokens(cache, user.id, now, token_lifetime=lifetime)
        if cmd.ward_ids is not None:
            await _check_wards(uow.session, principal.organisation_id, cmd.ward_ids)
            await repository.set_wards(uow.session, user.id, cmd.ward_ids)
            changes["wards"] = str(len(set(cmd.ward_ids)))
        uow.publish(
            audit_record(
                principal,
                "user.update",
                occurred_at=now,
                object_type="user",
                object_id=user.id,
                detail=changes,
            )
        )
        await uow.commit()
    async with uow:
        wards = await repository.ward_ids_of(uow.session, [user.id])
    return _user_read(user, wards[user.id])


async def unlock_user(
    *, uow: UnitOfWork, cache: Cache, principal: UserPrincipal, user_id: str
) -> UserRead:
    """Lift every wait failed sign-ins put on a user: the account-wide one and each address's
    (audited as `auth.unlock`, whether or not anything was waiting)."""
    now = uow.clock.now()
    async with uow:
        user = await repository.get_user(uow.session, user_id)
        if user is None or user.organisation_id != principal.organisation_id:
            raise NotFound("user not found")
        failures, waiting = (
            user.failed_logins,
            user.locked_until is not None and user.locked_until > now,
        )
        user.failed_logins, user.locked_until = 0, None
        uow.publish(
            audit_record(
                principal,
                "auth.unlock",
                occurred_at=now,
                object_type="user",
                object_id=user.id,
                detail={"failed_logins": failures, "account_waiting": waiting},
            )
        )
        await uow.commit()
    await throttling.forget_waits(cache, user.email)
    async with uow:
        wards = await repository.ward_ids_of(uow.session, [user.id])
    return _user_read(user, wards[user.id])


def _user_read(user: UserAccount, ward_ids: list[str]) -> UserRead:
    return UserRead(
        id=user.id,
        organisation_id=user.organisation_id,
        email=user.email,
        role=Role(user.role),
        is_active=user.is_active,
        mfa_enabled=user.mfa_enabled,
        ward_ids=ward_ids,
        created_at=user.created_at,
    )


async def _check_wards(
    session: AsyncSession, organisation_id: str, ward_ids: Sequence[str]
) -> None:
    known = await repository.wards_in_organisation(session, organisation_id, ward_ids)
    unknown = [index for index, ward in enumerate(ward_ids) if ward not in known]
    if unknown:
        raise Invalid(
            "unknown ward", errors=[FieldError(f"ward_ids.{i}", "no such ward") for i in unknown]
        )
