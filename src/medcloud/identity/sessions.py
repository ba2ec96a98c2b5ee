"""Use cases of signing in: password and one-time code, refresh-token sessions, MFA enrolment."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from typing import NoReturn

import pyotp

from medcloud.config import Settings
from medcloud.identity import repository, service
from medcloud.identity.models import RefreshToken, UserAccount
from medcloud.identity.schemas import MfaEnrolment, TokenRead
from medcloud.platform.audit import Outcome, audit_record
from medcloud.platform.cache import Cache
from medcloud.platform.errors import Conflict, FieldError, TooManyRequests, Unauthorized
from medcloud.platform.security import (
    Role,
    TokenService,
    UserPrincipal,
    hash_password,
    verify_password,
)
from medcloud.platform.uow import UnitOfWork

REFRESH_PREFIX = "mcr_"
WRONG_CREDENTIALS = "wrong email or password"

# Verified against when the email is unknown, so that both failures take the same time.
_absent_user_hash: list[str] = []


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
    """Exchange an email, password (and one-time code, if enrolled) for a session; guessing is
    bounded as `_check_password` says."""
    now = uow.clock.now()
    user, address_key, failures = await _check_password(
        uow=uow, cache=cache, settings=settings, email=email, password=password, source=source
    )
    async with uow:
        organisation = await repository.get_organisation(uow.session, user.organisation_id)
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


async def _check_password(
    *,
    uow: UnitOfWork,
    cache: Cache,
    settings: Settings,
    email: str,
    password: str,
    source: str | None,
) -> tuple[UserAccount, str, int]:
    """Check an account's password, with guessing bounded twice: per account, attempts are
    counted atomically *before* the password is checked and the account locks after
    `lockout_threshold` failures; per source address, failures beyond
    `address_failures_per_window` are refused without checking. Every use case that takes a
    password goes through here. Returns the user, the address's throttle key and failures."""
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
    if (
        not user.is_active
        or user.password_hash is None
        or not await verify_password(user.password_hash, password)
    ):
        await _refuse(uow, cache, settings, address_key, failures, email=email, user=user)
    return user, address_key, failures


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
                detail={"email_sha256": service.digest(email.lower())[:16]},
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
            token_hash=service.digest(token),
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
        stored = await repository.get_refresh_token(uow.session, service.digest(refresh_token))
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
        stored = await repository.get_refresh_token(uow.session, service.digest(refresh_token))
        if stored is None or stored.revoked_at is not None:
            # Unknown, or signed out already (or revoked with its session): nothing happens,
            # so nothing is audited a second time.
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
    """Give a user, proven by password, a new TOTP secret; their next sign-in confirms it.

    The password is checked as signing in checks it: throttled per address, counted per
    account, refused on a locked account."""
    user, _, _ = await _check_password(
        uow=uow, cache=cache, settings=settings, email=email, password=password, source=source
    )
    if user.mfa_enabled:
        raise Conflict("a second factor is already enrolled; an admin can reset it")
    secret = pyotp.random_base32()
    async with uow:
        stored = await repository.get_user(uow.session, user.id)
        assert stored is not None  # noqa: S101
        stored.totp_secret = secret
        stored.failed_logins = 0
        principal = UserPrincipal(user.id, user.organisation_id, Role(user.role))
        uow.publish(audit_record(principal, "auth.mfa_enrol", occurred_at=uow.clock.now()))
        await uow.commit()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name="medcloud")
    return MfaEnrolment(secret=secret, otpauth_uri=uri)
