"""Use cases of signing in: password and one-time code, refresh-token sessions, MFA enrolment."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, NoReturn

import pyotp

from medcloud.config import Settings
from medcloud.identity import repository, service, throttling
from medcloud.identity.models import Organisation, RefreshToken, UserAccount
from medcloud.identity.schemas import MfaEnrolment, TokenRead
from medcloud.platform.audit import AuditRecorded, Outcome, audit_record
from medcloud.platform.cache import Cache
from medcloud.platform.errors import Unauthorized
from medcloud.platform.security import (
    Role,
    TokenService,
    UserPrincipal,
    hash_password,
    verify_password,
)
from medcloud.platform.uow import UnitOfWork

REFRESH_PREFIX = "mcr_"
WRONG_CREDENTIALS = "wrong email, password or one-time code"

# Verified against whenever the account's own hash may not be, so every refusal costs one hash.
_absent_user_hash: list[str] = []


@dataclass(frozen=True)
class _Checked:
    """A password that opened its account, and the counts it was let through on."""

    user: UserAccount
    organisation: Organisation | None
    attempt: throttling.Attempt
    failures: int
    """The account's failures from every address, this attempt included (see `_forgive`)."""


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
    checked = await _check_password(
        uow=uow, cache=cache, settings=settings, email=email, password=password, source=source
    )
    user, organisation = checked.user, checked.organisation
    # An enrolled secret is required at once, even before its first use confirms it.
    mfa_required = (
        user.mfa_enabled
        or user.totp_secret is not None
        or (user.role == Role.ADMIN and organisation is not None and organisation.require_admin_mfa)
    )
    # A missing or wrong code is answered as a wrong password is: only the holder of the second
    # factor may learn that the password was right.
    if mfa_required:
        secret = user.totp_secret
        if secret is None or not totp:
            reason = "second_factor_not_enrolled" if secret is None else "one_time_code_missing"
        elif not pyotp.TOTP(secret).verify(totp, for_time=now, valid_window=1):
            reason = "one_time_code_wrong"
        else:
            reason = ""
        if reason:
            await _refuse(
                uow,
                settings,
                checked.attempt,
                email=email,
                user=user,
                failures=checked.failures,
                reason=reason,
            )

    principal = UserPrincipal(user.id, user.organisation_id, Role(user.role))
    async with uow:
        fresh = await repository.get_user(uow.session, user.id)
        assert fresh is not None  # noqa: S101
        _forgive(fresh, checked.failures, settings)
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
    await checked.attempt.succeeded()
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
) -> _Checked:
    """Check an account's password within the limits `throttling` describes.

    An address over its budget, or still waiting for this email, gets 429 at once (whether the
    email exists plays no part in either). Otherwise the attempt is counted against the
    account before anything is verified, and exactly one argon2 hash is verified, whatever
    follows: an unknown email, an account-wide wait, a disabled account and a wrong password
    all take as long and get the same answer, and the account's own hash is only verified when
    it could open it. Every use case that takes a password goes through here.
    """
    policy = settings.identity
    now = uow.clock.now()
    attempt = throttling.Attempt(cache=cache, policy=policy, email=email, source=source, now=now)
    await attempt.admit()
    dummy = await _dummy_hash()
    async with uow:
        reserved = await repository.reserve_login_attempt(
            uow.session,
            email,
            now,
            waits=not attempt.known_address,
            forget_before=now - dt.timedelta(hours=policy.failures_forgotten_after_hours),
        )
        wait = 0.0 if reserved is None else throttling.account_wait(policy, reserved[1])
        if reserved is not None and wait and not attempt.known_address:
            # In the same transaction as the count, so no parallel guess slips in before it. A
            # known address starts its wait only once it has failed (`_refuse`): its success
            # must not make everyone else wait longer.
            await repository.lock_user(uow.session, reserved[0], now + dt.timedelta(seconds=wait))
        user = await repository.get_user_by_email(uow.session, email)
        organisation = (
            None
            if user is None
            else await repository.get_organisation(uow.session, user.organisation_id)
        )
        own = None
        if user is not None and reserved is not None and user.is_active:
            own = user.password_hash
        # The count is decided, and held, by the UPDATE above; it is committed while the hash
        # is verified, so that the disk write only an open account's count makes stays out of
        # the answer's time instead of setting its refusals apart. The session is given back
        # as soon as the count is committed, not once the hash is verified: on SQLite it is
        # the one write connection, and a flood of guesses would otherwise queue every write
        # of the process behind one argon2 verification after another.
        verifying = asyncio.create_task(verify_password(own or dummy, password))
        try:
            await uow.commit()
        except BaseException:
            verifying.cancel()
            raise
    matches = await verifying
    failures = 0 if reserved is None else reserved[1]
    if user is None or own is None or not matches:
        await _refuse(
            uow,
            settings,
            attempt,
            email=email,
            user=user,
            failures=failures,
            reason=_why(user, reserved is not None),
        )
    return _Checked(user, organisation, attempt, failures)


def _why(user: UserAccount | None, counted: bool) -> str:
    if user is None:
        return "unknown_email"
    if not counted:
        return "account_waiting"
    if not user.is_active:
        return "disabled"
    return "no_password" if user.password_hash is None else "password"


async def _dummy_hash() -> str:
    # Made on the first attempt of any kind, so the first unknown email is not the slow one.
    if not _absent_user_hash:
        _absent_user_hash.append(await hash_password(uuid.uuid4().hex))
    return _absent_user_hash[0]


def _forgive(user: UserAccount, failures: int, settings: Settings) -> None:
    """Give a successful attempt's count back. Below the account-wide ceiling a success clears
    the count (a user's typos are forgiven); past it the count stands, less this attempt, so a
    user signing in from a known address hands an attacker elsewhere no fresh allowance."""
    if failures <= settings.identity.account_failures_before_wait:
        user.failed_logins, user.locked_until = 0, None
    else:
        user.failed_logins = max(0, user.failed_logins - 1)


async def _refuse(
    uow: UnitOfWork,
    settings: Settings,
    attempt: throttling.Attempt,
    *,
    email: str,
    user: UserAccount | None,
    failures: int,
    reason: str,
) -> NoReturn:
    """Audit a failed sign-in, and any wait it starts, and raise the one answer every refusal
    gets, whatever `reason` (kept in the audit entry only)."""
    policy = settings.identity
    # The email is an identifier of staff, not of patients; keep only its digest.
    email_sha256 = throttling.email_key(email)[:16]
    async with uow:
        uow.publish(
            _anonymous_record(
                uow, "auth.login", user, {"email_sha256": email_sha256, "reason": reason}
            )
        )
        # A wait starting is a lock, audited once; each further failure lengthens it.
        if attempt.failures == policy.failures_before_wait:
            detail = {
                "email_sha256": email_sha256,
                "scope": "address",
                "wait_seconds": attempt.wait,
            }
            uow.publish(_anonymous_record(uow, "auth.lock", user, detail))
        wait = throttling.account_wait(policy, failures)
        if failures and attempt.known_address and user is not None:
            until = uow.clock.now() + dt.timedelta(seconds=wait)
            await repository.lock_user(uow.session, user.id, until)
        if failures == policy.account_failures_before_wait:
            detail = {"email_sha256": email_sha256, "scope": "account", "wait_seconds": wait}
            uow.publish(_anonymous_record(uow, "auth.lock", user, detail))
        await uow.commit()
    error = Unauthorized(WRONG_CREDENTIALS)
    error.audited = True
    raise error


def _anonymous_record(
    uow: UnitOfWork, action: str, user: UserAccount | None, detail: dict[str, Any]
) -> AuditRecorded:
    failed = action == "auth.login"
    return audit_record(
        None,
        action,
        occurred_at=uow.clock.now(),
        organisation_id=user.organisation_id if user else "",
        object_type="user",
        object_id=user.id if user else None,
        outcome=Outcome.FAILURE if failed else Outcome.SUCCESS,
        detail=detail,
    )


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

    The password is checked as signing in checks it, within the same limits and with the same
    answer to every refusal. A user whose second factor is confirmed is refused as a wrong
    password would be: telling them apart would confirm the password without the code."""
    checked = await _check_password(
        uow=uow, cache=cache, settings=settings, email=email, password=password, source=source
    )
    user = checked.user
    if user.mfa_enabled:
        await _refuse(
            uow,
            settings,
            checked.attempt,
            email=email,
            user=user,
            failures=checked.failures,
            reason="second_factor_enrolled",
        )
    secret = pyotp.random_base32()
    async with uow:
        stored = await repository.get_user(uow.session, user.id)
        assert stored is not None  # noqa: S101
        stored.totp_secret = secret
        _forgive(stored, checked.failures, settings)
        principal = UserPrincipal(user.id, user.organisation_id, Role(user.role))
        uow.publish(audit_record(principal, "auth.mfa_enrol", occurred_at=uow.clock.now()))
        await uow.commit()
    await checked.attempt.succeeded()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name="medcloud")
    return MfaEnrolment(secret=secret, otpauth_uri=uri)
