"""Use cases of the identity context: sign-in and sessions, users, wards, patients, break-glass."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Sequence
from typing import NoReturn

import pyotp
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.config import Settings
from medcloud.identity import repository
from medcloud.identity.events import UserCreated
from medcloud.identity.models import (
    BreakGlassGrant,
    Invitation,
    Organisation,
    Patient,
    RefreshToken,
    UserAccount,
    Ward,
)
from medcloud.identity.passwords import check_password
from medcloud.identity.schemas import (
    BreakGlassRead,
    MfaEnrolment,
    PatientCreate,
    PatientPage,
    PatientRead,
    PatientUpdate,
    TokenRead,
    UserInvite,
    UserInvited,
    UserPage,
    UserRead,
    UserUpdate,
    WardCreate,
    WardPage,
    WardRead,
)
from medcloud.platform.audit import AuditRecorded, Outcome, audit_record
from medcloud.platform.cache import Cache
from medcloud.platform.directory import CareDirectory
from medcloud.platform.errors import (
    Conflict,
    FieldError,
    Forbidden,
    Invalid,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from medcloud.platform.paging import decode_cursor, page_of
from medcloud.platform.policy import ensure_in_care_scope
from medcloud.platform.security import (
    Role,
    TokenService,
    UserPrincipal,
    hash_password,
    verify_password,
)
from medcloud.platform.uow import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

REFRESH_PREFIX = "mcr_"
INVITATION_PREFIX = "mci_"
WRONG_CREDENTIALS = "wrong email or password"

# Verified against when the email is unknown, so that both failures take the same time.
_absent_user_hash: list[str] = []


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# --- sign-in and sessions ----------------------------------------------------------------------


async def sign_in(
    *,
    uow: UnitOfWork,
    tokens: TokenService,
    cache: Cache,
    settings: Settings,
    email: str,
    password: str,
    totp: str | None,
    source: str | None,
) -> TokenRead:
    """Exchange an email, password (and one-time code, if enrolled) for a session.

    Guessing is bounded twice: per account, attempts are counted atomically *before* the
    password is checked and the account locks after `lockout_threshold` failures; per source
    address, failures beyond `address_failures_per_window` are refused without checking.
    """
    policy = settings.identity
    address_key = f"login-failures:{source or 'unknown'}"
    failures = int(await cache.get(address_key) or 0)
    if failures >= policy.address_failures_per_window:
        raise TooManyRequests(
            "too many failed sign-ins from this address",
            retry_after=int(policy.address_window_seconds),
        )
    now = uow.clock.now()
    async with uow:
        reserved = await repository.reserve_login_attempt(uow.session, email, now)
        await uow.commit()
    if reserved is None:
        async with uow:
            locked = await repository.get_user_by_email(uow.session, email)
        # A locked account is refused without hashing: that is what keeps a flood of guesses
        # cheap. Only an unknown email pays for a dummy hash, so it answers as slowly as a
        # wrong password would.
        await _refuse(
            uow,
            cache,
            settings,
            address_key,
            failures,
            email=email,
            user=locked,
            pretend=locked is None,
        )
    user_id, attempts = reserved
    if attempts > policy.lockout_threshold:
        async with uow:
            await repository.lock_user(
                uow.session, user_id, now + dt.timedelta(minutes=policy.lockout_minutes)
            )
            await uow.commit()
        async with uow:
            locked = await repository.get_user(uow.session, user_id)
        await _refuse(uow, cache, settings, address_key, failures, email=email, user=locked)

    async with uow:
        user = await repository.get_user(uow.session, user_id)
        assert user is not None  # noqa: S101  (it was just counted)
        organisation = await repository.get_organisation(uow.session, user.organisation_id)
    if (
        not user.is_active
        or user.password_hash is None
        or not await verify_password(user.password_hash, password)
    ):
        await _refuse(uow, cache, settings, address_key, failures, email=email, user=user)
    # An enrolled secret is required at once, even before its first use confirms it.
    mfa_required = (
        user.mfa_enabled
        or user.totp_secret is not None
        or (user.role == Role.ADMIN and organisation is not None and organisation.require_admin_mfa)
    )
    if mfa_required:
        if user.totp_secret is None:
            raise Unauthorized("this account needs a second factor: enrol one first")
        if not totp or not pyotp.TOTP(user.totp_secret).verify(totp, for_time=now, valid_window=1):
            await _refuse(
                uow, cache, settings, address_key, failures, email=email, user=user, field="totp"
            )

    principal = UserPrincipal(user.id, user.organisation_id, Role(user.role))
    async with uow:
        fresh = await repository.get_user(uow.session, user.id)
        assert fresh is not None  # noqa: S101
        fresh.failed_logins = 0
        fresh.last_login_at = now
        if mfa_required and not fresh.mfa_enabled:
            fresh.mfa_enabled = True  # the first code proves the enrolment
        refresh = _new_refresh_token(uow, user.id, family_id=str(uuid.uuid4()), settings=settings)
        uow.publish(
            audit_record(
                principal, "auth.login", occurred_at=now, object_type="user", object_id=user.id
            )
        )
        await uow.commit()
    return TokenRead(
        access_token=tokens.issue(principal),
        expires_in=int(tokens.lifetime.total_seconds()),
        refresh_token=refresh,
    )


async def _refuse(
    uow: UnitOfWork,
    cache: Cache,
    settings: Settings,
    address_key: str,
    failures: int,
    *,
    email: str,
    user: UserAccount | None,
    field: str | None = None,
    pretend: bool = False,
) -> NoReturn:
    """Record a failed sign-in (audit and throttling) and raise the same answer for every cause.

    With `pretend`, first spend the time a password check would take.
    """
    if pretend:
        if not _absent_user_hash:
            _absent_user_hash.append(await hash_password(uuid.uuid4().hex))
        await verify_password(_absent_user_hash[0], "x")
    await cache.set(
        address_key,
        str(failures + 1).encode(),
        ttl_seconds=settings.identity.address_window_seconds,
    )
    async with uow:
        uow.publish(
            audit_record(
                None,
                "auth.login",
                occurred_at=uow.clock.now(),
                organisation_id=user.organisation_id if user else "",
                object_type="user",
                object_id=user.id if user else None,
                outcome=Outcome.FAILURE,
                # The email is an identifier of staff, not of patients; keep only its digest.
                detail={"email_sha256": _digest(email.lower())[:16]},
            )
        )
        await uow.commit()
    error = Unauthorized(WRONG_CREDENTIALS)
    error.audited = True
    if field is not None:
        error.errors = (FieldError(field, "a valid one-time code is required"),)
    raise error


def _new_refresh_token(uow: UnitOfWork, user_id: str, *, family_id: str, settings: Settings) -> str:
    token = REFRESH_PREFIX + secrets.token_urlsafe(32)
    now = uow.clock.now()
    uow.session.add(
        RefreshToken(
            id=str(uuid.uuid4()),
            family_id=family_id,
            user_id=user_id,
            token_hash=_digest(token),
            issued_at=now,
            expires_at=now + dt.timedelta(minutes=settings.identity.session_idle_minutes),
        )
    )
    return token


async def refresh_session(
    *, uow: UnitOfWork, tokens: TokenService, settings: Settings, refresh_token: str
) -> TokenRead:
    """Rotate a refresh token; a spent one being replayed revokes its whole session."""
    now = uow.clock.now()
    async with uow:
        stored = await repository.get_refresh_token(uow.session, _digest(refresh_token))
        if stored is None or stored.revoked_at is not None:
            raise Unauthorized("the refresh token is not valid")
        user = await repository.get_user(uow.session, stored.user_id)
        started = await repository.family_started_at(uow.session, stored.family_id)
        reused = stored.spent_at is not None or not await repository.spend_refresh_token(
            uow.session, stored.id, now
        )
        if reused:
            # Someone holds a copy of a token that was already exchanged: end the session.
            await repository.revoke_family(uow.session, stored.family_id, now)
            uow.publish(
                audit_record(
                    None,
                    "auth.refresh_reuse",
                    occurred_at=now,
                    organisation_id=user.organisation_id if user else "",
                    object_type="user",
                    object_id=stored.user_id,
                    outcome=Outcome.DENIED,
                )
            )
            await uow.commit()
            raise Unauthorized("the refresh token was already used; the session is revoked")
        deadline = (started or now) + dt.timedelta(hours=settings.identity.session_max_hours)
        if stored.expires_at <= now or deadline <= now or user is None or not user.is_active:
            raise Unauthorized("the session has expired; sign in again")
        token = _new_refresh_token(uow, user.id, family_id=stored.family_id, settings=settings)
        await uow.commit()
    principal = UserPrincipal(user.id, user.organisation_id, Role(user.role))
    return TokenRead(
        access_token=tokens.issue(principal),
        expires_in=int(tokens.lifetime.total_seconds()),
        refresh_token=token,
    )


async def sign_out(*, uow: UnitOfWork, refresh_token: str) -> None:
    """Revoke the session a refresh token belongs to."""
    now = uow.clock.now()
    async with uow:
        stored = await repository.get_refresh_token(uow.session, _digest(refresh_token))
        if stored is None:
            return
        await repository.revoke_family(uow.session, stored.family_id, now)
        user = await repository.get_user(uow.session, stored.user_id)
        if user is not None:
            principal = UserPrincipal(user.id, user.organisation_id, Role(user.role))
            uow.publish(audit_record(principal, "auth.logout", occurred_at=now))
        await uow.commit()


async def enrol_mfa(
    *,
    uow: UnitOfWork,
    cache: Cache,
    settings: Settings,
    email: str,
    password: str,
    source: str | None,
) -> MfaEnrolment:
    """Give a user, proven by password, a new TOTP secret; their next sign-in confirms it."""
    address_key = f"login-failures:{source or 'unknown'}"
    failures = int(await cache.get(address_key) or 0)
    async with uow:
        user = await repository.get_user_by_email(uow.session, email)
    if user is None or user.password_hash is None or not user.is_active:
        await _refuse(
            uow,
            cache,
            settings,
            address_key,
            failures,
            email=email,
            user=user,
            pretend=user is None,
        )
    if not await verify_password(user.password_hash or "", password):
        await _refuse(uow, cache, settings, address_key, failures, email=email, user=user)
    if user.mfa_enabled:
        raise Conflict("a second factor is already enrolled; an admin can reset it")
    secret = pyotp.random_base32()
    async with uow:
        stored = await repository.get_user(uow.session, user.id)
        assert stored is not None  # noqa: S101
        stored.totp_secret = secret
        principal = UserPrincipal(user.id, user.organisation_id, Role(user.role))
        uow.publish(audit_record(principal, "auth.mfa_enrol", occurred_at=uow.clock.now()))
        await uow.commit()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name="medcloud")
    return MfaEnrolment(secret=secret, otpauth_uri=uri)


# --- users -------------------------------------------------------------------------------------


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
                id=str(uuid.uuid4()), user_id=user.id, token_hash=_digest(token), expires_at=expires
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
        invitation = await repository.get_invitation(uow.session, _digest(token))
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


async def list_users(*, session: AsyncSession, principal: UserPrincipal) -> UserPage:
    """Return the organisation's users."""
    users = await repository.list_users(session, principal.organisation_id)
    wards = await repository.ward_ids_of(session, [u.id for u in users])
    return UserPage(items=[_user_read(u, wards[u.id]) for u in users])


async def update_user(
    *, uow: UnitOfWork, principal: UserPrincipal, user_id: str, cmd: UserUpdate
) -> UserRead:
    """Change a user's role, wards or whether they may sign in; disabling ends their sessions."""
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


# --- patients ----------------------------------------------------------------------------------


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
    return _patient_read(patient)


async def get_patient(
    *, uow: UnitOfWork, care: CareDirectory, principal: UserPrincipal, patient_id: str
) -> PatientRead:
    """Return a patient within the user's care scope; the read is audited."""
    async with uow:
        patient = await _patient_in_scope(uow, care, principal, patient_id)
        uow.publish(_patient_audit(uow, principal, "patient.read", patient))
        await uow.commit()
    return _patient_read(patient)


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
    return PatientPage(items=[_patient_read(p) for p in shown], next_cursor=next_cursor)


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
    return _patient_read(patient)


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


def _patient_read(patient: Patient) -> PatientRead:
    return PatientRead(
        id=patient.id,
        identifier_system=patient.identifier_system,
        identifier_value=patient.identifier_value,
        family_name=patient.family_name,
        given_name=patient.given_name,
        birth_date=patient.birth_date,
        ward_id=patient.ward_id,
        created_at=patient.created_at,
    )


# --- bootstrap ---------------------------------------------------------------------------------


async def create_organisation(
    *,
    uow_factory: UnitOfWorkFactory,
    name: str,
    admin_email: str,
    admin_password: str,
    min_password_length: int | None = 12,
) -> tuple[str, str]:
    """Create an organisation with its first admin; return (organisation id, admin id).

    `min_password_length=None` skips the password policy (for a password an operator set in
    configuration rather than a person chose).
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
    await create_organisation(
        uow_factory=uow_factory,
        name=settings.bootstrap_organisation,
        admin_email=email,
        admin_password=password.get_secret_value(),
        min_password_length=None,
    )
    log.info("identity.bootstrap_admin_created")
