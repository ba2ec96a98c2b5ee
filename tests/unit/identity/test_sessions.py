"""Sessions after signing in, over the fake unit of work: refresh-token rotation, reuse
detection, idle and absolute timeouts, signing out, and enrolling a second factor."""

from __future__ import annotations

import datetime as dt

import pyotp
import pytest

from medcloud.config import IdentitySettings, Settings
from medcloud.identity import repository, service, sessions, users
from medcloud.identity.models import RefreshToken, UserAccount
from medcloud.identity.schemas import MfaEnrolment, TokenRead, UserUpdate
from medcloud.platform.audit import ActorType, Outcome
from medcloud.platform.cache import MemoryCache
from medcloud.platform.clock import FrozenClock
from medcloud.platform.errors import TooManyRequests, Unauthorized
from medcloud.platform.security import Role, TokenService, UserPrincipal
from tests.unit.identity.fakes import (
    ALICE,
    NINA,
    NOW,
    PASSWORD,
    FakeUnitOfWork,
    InMemoryRepository,
    Member,
    token_service,
)


@pytest.fixture
def tokens(clock: FrozenClock) -> TokenService:
    return token_service(clock)


async def sign_in(
    uow: FakeUnitOfWork,
    settings: Settings,
    tokens: TokenService,
    who: Member = NINA,
    *,
    cache: MemoryCache | None = None,
    totp: str | None = None,
) -> TokenRead:
    return await sessions.sign_in(
        uow=uow.port,
        tokens=tokens,
        cache=cache or MemoryCache(),
        settings=settings,
        email=who.email,
        password=PASSWORD,
        totp=totp,
        source="10.0.0.7",
    )


async def refresh(
    uow: FakeUnitOfWork, settings: Settings, tokens: TokenService, refresh_token: str
) -> TokenRead:
    return await sessions.refresh_session(
        uow=uow.port, tokens=tokens, settings=settings, refresh_token=refresh_token
    )


async def enrol(
    uow: FakeUnitOfWork,
    settings: Settings,
    who: Member = NINA,
    *,
    password: str = PASSWORD,
    cache: MemoryCache | None = None,
) -> MfaEnrolment:
    return await sessions.enrol_mfa(
        uow=uow.port,
        cache=cache or MemoryCache(),
        settings=settings,
        email=who.email,
        password=password,
        source="10.0.0.7",
    )


def row_of(repo: InMemoryRepository, refresh_token: str) -> RefreshToken:
    (row,) = [t for t in repo.all(RefreshToken) if t.token_hash == service.digest(refresh_token)]
    return row


def account(repo: InMemoryRepository, who: Member) -> UserAccount:
    (found,) = [u for u in repo.all(UserAccount) if u.id == who.name]
    return found


# --- rotation ----------------------------------------------------------------------------------


async def test_a_refresh_rotates_the_token_within_the_same_session(
    st_marys: InMemoryRepository,
    uow: FakeUnitOfWork,
    settings: Settings,
    tokens: TokenService,
    clock: FrozenClock,
) -> None:
    first = await sign_in(uow, settings, tokens)
    clock.advance(minutes=10)

    second = await refresh(uow, settings, tokens, first.refresh_token)

    assert second.refresh_token.startswith(sessions.REFRESH_PREFIX)
    assert second.refresh_token != first.refresh_token
    old, new = row_of(st_marys, first.refresh_token), row_of(st_marys, second.refresh_token)
    assert (old.spent_at, old.revoked_at) == (clock.now(), None)
    assert new.family_id == old.family_id
    idle = dt.timedelta(minutes=settings.identity.session_idle_minutes)
    assert (new.issued_at, new.expires_at) == (clock.now(), clock.now() + idle)
    assert tokens.verify(second.access_token) == NINA.principal


async def test_replaying_a_spent_token_ends_that_session_and_no_other(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings, tokens: TokenService
) -> None:
    stolen = await sign_in(uow, settings, tokens)
    elsewhere = await sign_in(uow, settings, tokens)
    rotated = await refresh(uow, settings, tokens, stolen.refresh_token)

    with pytest.raises(Unauthorized, match="already used"):
        await refresh(uow, settings, tokens, stolen.refresh_token)

    family = row_of(st_marys, stolen.refresh_token).family_id
    assert all(t.revoked_at == NOW for t in st_marys.all(RefreshToken) if t.family_id == family)
    with pytest.raises(Unauthorized, match="not valid"):
        await refresh(uow, settings, tokens, rotated.refresh_token)  # the thief's copy, too
    (record,) = uow.audited(Outcome.DENIED, action="auth.refresh_reuse")
    assert (record.actor_type, record.organisation_id, record.object_id) == (
        ActorType.ANONYMOUS,
        NINA.organisation_id,
        NINA.name,
    )
    assert (await refresh(uow, settings, tokens, elsewhere.refresh_token)).access_token


async def test_a_token_another_request_spent_first_counts_as_a_replay(
    st_marys: InMemoryRepository,
    uow: FakeUnitOfWork,
    settings: Settings,
    tokens: TokenService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signed_in = await sign_in(uow, settings, tokens)

    async def lose_the_race(*_args: object) -> bool:
        return False

    monkeypatch.setattr(repository, "spend_refresh_token", lose_the_race)
    with pytest.raises(Unauthorized, match="already used"):
        await refresh(uow, settings, tokens, signed_in.refresh_token)
    assert row_of(st_marys, signed_in.refresh_token).revoked_at == NOW
    assert len(uow.audited(Outcome.DENIED, action="auth.refresh_reuse")) == 1


async def test_an_unknown_refresh_token_is_refused_without_touching_any_session(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings, tokens: TokenService
) -> None:
    signed_in = await sign_in(uow, settings, tokens)
    before = len(uow.committed)
    with pytest.raises(Unauthorized, match="not valid"):
        await refresh(uow, settings, tokens, sessions.REFRESH_PREFIX + "guessed")
    assert len(uow.committed) == before
    assert row_of(st_marys, signed_in.refresh_token).revoked_at is None


# --- timeouts ----------------------------------------------------------------------------------


async def test_an_idle_session_expires_and_the_refusal_spends_nothing(
    st_marys: InMemoryRepository,
    uow: FakeUnitOfWork,
    settings: Settings,
    tokens: TokenService,
    clock: FrozenClock,
) -> None:
    signed_in = await sign_in(uow, settings, tokens)
    clock.advance(minutes=settings.identity.session_idle_minutes)
    with pytest.raises(Unauthorized, match="expired"):
        await refresh(uow, settings, tokens, signed_in.refresh_token)
    # Refused, not replayed: the token stays unspent and the session unrevoked.
    row = row_of(st_marys, signed_in.refresh_token)
    assert (row.spent_at, row.revoked_at) == (None, None)
    assert uow.audited(action="auth.refresh_reuse") == []


async def test_no_session_outlives_its_maximum_however_active(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, tokens: TokenService, clock: FrozenClock
) -> None:
    settings = Settings(identity=IdentitySettings(session_max_hours=1, session_idle_minutes=30))
    current = (await sign_in(uow, settings, tokens)).refresh_token
    for _ in range(2):
        clock.advance(minutes=25)
        current = (await refresh(uow, settings, tokens, current)).refresh_token
    clock.advance(minutes=10)  # 60 minutes since signing in; the token itself is 10 minutes old
    with pytest.raises(Unauthorized, match="expired"):
        await refresh(uow, settings, tokens, current)


async def test_a_disabled_user_cannot_refresh(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings, tokens: TokenService
) -> None:
    signed_in = await sign_in(uow, settings, tokens)
    account(st_marys, NINA).is_active = False
    with pytest.raises(Unauthorized):
        await refresh(uow, settings, tokens, signed_in.refresh_token)


async def test_disabling_a_user_revokes_the_session_she_holds(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings, tokens: TokenService
) -> None:
    signed_in = await sign_in(uow, settings, tokens)
    await users.update_user(
        uow=uow.port,
        cache=MemoryCache(),
        settings=settings,
        principal=ALICE.principal,
        user_id=NINA.name,
        cmd=UserUpdate(is_active=False),
    )
    account(st_marys, NINA).is_active = True  # even re-enabled, the old session stays ended
    with pytest.raises(Unauthorized, match="not valid"):
        await refresh(uow, settings, tokens, signed_in.refresh_token)


async def test_a_new_role_reaches_the_next_access_token(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings, tokens: TokenService
) -> None:
    signed_in = await sign_in(uow, settings, tokens)
    await users.update_user(
        uow=uow.port,
        cache=MemoryCache(),
        settings=settings,
        principal=ALICE.principal,
        user_id=NINA.name,
        cmd=UserUpdate(role=Role.CLINICIAN),
    )
    renewed = await refresh(uow, settings, tokens, signed_in.refresh_token)
    assert tokens.verify(renewed.access_token) == UserPrincipal(
        NINA.name, NINA.organisation_id, Role.CLINICIAN
    )


# --- signing out -------------------------------------------------------------------------------


async def test_signing_out_revokes_that_session_only_and_is_audited(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings, tokens: TokenService
) -> None:
    first = await sign_in(uow, settings, tokens)
    rotated = await refresh(uow, settings, tokens, first.refresh_token)
    other = await sign_in(uow, settings, tokens)

    await sessions.sign_out(uow=uow.port, refresh_token=first.refresh_token)  # even a spent one

    with pytest.raises(Unauthorized):
        await refresh(uow, settings, tokens, rotated.refresh_token)
    (record,) = uow.audited(action="auth.logout")
    assert (record.actor_id, record.organisation_id) == (NINA.name, NINA.organisation_id)
    assert row_of(st_marys, other.refresh_token).revoked_at is None
    assert (await refresh(uow, settings, tokens, other.refresh_token)).access_token


async def test_signing_out_twice_is_audited_once(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings, tokens: TokenService
) -> None:
    session = await sign_in(uow, settings, tokens)

    await sessions.sign_out(uow=uow.port, refresh_token=session.refresh_token)
    await sessions.sign_out(uow=uow.port, refresh_token=session.refresh_token)

    assert len(uow.audited(action="auth.logout")) == 1


async def test_signing_out_with_an_unknown_token_does_nothing(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork
) -> None:
    await sessions.sign_out(uow=uow.port, refresh_token=sessions.REFRESH_PREFIX + "unknown")
    assert (uow.commits, uow.committed) == (0, [])


# --- a second factor ---------------------------------------------------------------------------


async def test_enrolling_needs_the_password_and_the_first_code_confirms_it(
    st_marys: InMemoryRepository,
    uow: FakeUnitOfWork,
    settings: Settings,
    tokens: TokenService,
    clock: FrozenClock,
) -> None:
    enrolment = await enrol(uow, settings)

    nina = account(st_marys, NINA)
    assert (nina.totp_secret, nina.mfa_enabled) == (enrolment.secret, False)
    assert pyotp.parse_uri(enrolment.otpauth_uri).secret == enrolment.secret
    (record,) = uow.audited(action="auth.mfa_enrol")
    assert record.actor_id == NINA.name

    with pytest.raises(Unauthorized) as refused:
        await sign_in(uow, settings, tokens)
    assert (refused.value.detail, refused.value.errors) == (sessions.WRONG_CREDENTIALS, ())
    code = pyotp.TOTP(enrolment.secret).at(clock.now())
    assert (await sign_in(uow, settings, tokens, totp=code)).access_token
    assert account(st_marys, NINA).mfa_enabled


async def test_a_wrong_password_enrols_nothing_and_is_audited_as_a_failed_sign_in(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    cache = MemoryCache()
    with pytest.raises(Unauthorized, match=sessions.WRONG_CREDENTIALS):
        await enrol(uow, settings, password="not-" + PASSWORD, cache=cache)
    assert account(st_marys, NINA).totp_secret is None
    (failure,) = uow.audited(Outcome.FAILURE, action="auth.login")
    assert failure.object_id == NINA.name
    # It counts as signing in would: enough of them make the address wait.
    for _ in range(settings.identity.failures_before_wait - 1):
        with pytest.raises(Unauthorized):
            await enrol(uow, settings, password="not-" + PASSWORD, cache=cache)
    with pytest.raises(TooManyRequests):
        await enrol(uow, settings, cache=cache)


async def test_a_confirmed_second_factor_cannot_be_replaced_and_the_password_is_not_confirmed(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    nina = account(st_marys, NINA)
    nina.totp_secret, nina.mfa_enabled = pyotp.random_base32(), True
    kept = nina.totp_secret
    with pytest.raises(Unauthorized) as right:
        await enrol(uow, settings)
    with pytest.raises(Unauthorized) as wrong:
        await enrol(uow, settings, password="not-" + PASSWORD)
    assert (right.value.detail, right.value.errors, right.value.headers) == (
        wrong.value.detail,
        wrong.value.errors,
        wrong.value.headers,
    )
    assert account(st_marys, NINA).totp_secret == kept
    reasons = [e.detail["reason"] for e in uow.audited(Outcome.FAILURE, action="auth.login")]
    assert reasons == ["second_factor_enrolled", "password"]


async def test_enrolling_is_throttled_per_address_like_signing_in(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    cache = MemoryCache()
    for n in range(settings.identity.address_failures_per_window):
        with pytest.raises(Unauthorized):
            await enrol(
                uow, settings, Member(f"stranger{n}", NINA.organisation_id, Role.NURSE), cache=cache
            )
    with pytest.raises(TooManyRequests):
        await enrol(uow, settings, cache=cache)


async def test_enrolling_is_refused_for_a_locked_account(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    account(st_marys, NINA).locked_until = NOW + dt.timedelta(minutes=15)
    with pytest.raises(Unauthorized):
        await enrol(uow, settings)
