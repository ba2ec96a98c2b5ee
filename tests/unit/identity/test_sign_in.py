"""Signing in, as a use case over a fake unit of work and an in-memory repository: no database.

What is checked here is the policy (lockout, address throttling, one answer for every failure,
the second factor, what is audited); the integration tests check the same over HTTP and SQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyotp
import pytest

from medcloud.config import Settings
from medcloud.identity import sessions
from medcloud.identity.models import Organisation, RefreshToken, UserAccount
from medcloud.platform.audit import Outcome
from medcloud.platform.cache import MemoryCache
from medcloud.platform.clock import FrozenClock
from medcloud.platform.errors import DomainError, TooManyRequests, Unauthorized
from medcloud.platform.security import hash_password
from tests.unit.identity.fakes import NOW, FakeUnitOfWork, InMemoryRepository, token_service

EMAIL = "nina.nurse@stmary.example"
PASSWORD = "correct horse battery staple"


async def enrol(
    repo: InMemoryRepository,
    *,
    role: str = "nurse",
    totp_secret: str | None = None,
    admin_mfa: bool = False,
) -> UserAccount:
    organisation = Organisation(id="org-1", name="St Mary's", require_admin_mfa=admin_mfa)
    user = UserAccount(
        id="user-1",
        organisation_id=organisation.id,
        email=EMAIL,
        password_hash=await hash_password(PASSWORD),
        role=role,
        is_active=True,
        created_at=NOW,
        failed_logins=0,
        locked_until=None,
        totp_secret=totp_secret,
        mfa_enabled=False,
        last_login_at=None,
    )
    repo.put(organisation, user)
    return user


async def sign_in(
    uow: FakeUnitOfWork,
    settings: Settings,
    cache: MemoryCache,
    *,
    password: str = PASSWORD,
    email: str = EMAIL,
    totp: str | None = None,
    source: str = "10.0.0.7",
) -> Any:
    return await sessions.sign_in(
        uow=uow.port,
        tokens=token_service(uow.clock),
        cache=cache,
        settings=settings,
        email=email,
        password=password,
        totp=totp,
        source=source,
    )


def answer_of(error: DomainError) -> tuple[object, ...]:
    """Everything of a refusal that reaches the caller."""
    return type(error), error.status, error.detail, error.errors, error.headers


async def test_the_right_password_opens_a_session_and_clears_the_failures(
    repo: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    user = await enrol(repo)
    user.failed_logins = 2
    answer = await sign_in(uow, settings, MemoryCache())
    assert answer.access_token and answer.refresh_token.startswith(sessions.REFRESH_PREFIX)
    assert (user.failed_logins, user.last_login_at) == (0, NOW)
    (stored,) = [row for row in uow.session.added if isinstance(row, RefreshToken)]
    assert stored.token_hash != answer.refresh_token  # only a digest is kept
    assert [e.action for e in uow.audited(Outcome.SUCCESS)] == ["auth.login"]


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(
    repo: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    await enrol(repo)
    cache = MemoryCache()
    answers = []
    for email, password in ((EMAIL, "wrong"), ("nobody@stmary.example", PASSWORD)):
        with pytest.raises(Unauthorized) as refused:
            await sign_in(uow, settings, cache, email=email, password=password)
        answers.append(str(refused.value))
    assert answers == [sessions.WRONG_CREDENTIALS] * 2
    failures = uow.audited(Outcome.FAILURE)
    assert len(failures) == 2
    assert all(EMAIL not in repr(e) and "nobody" not in repr(e) for e in failures)
    assert [e.detail["reason"] for e in failures] == ["password", "unknown_email"]


async def test_past_the_ceiling_even_the_right_password_is_refused_from_a_new_address(
    repo: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings, clock: FrozenClock
) -> None:
    user = await enrol(repo)
    cache = MemoryCache()
    ceiling = settings.identity.account_failures_before_wait
    for n in range(ceiling):
        with pytest.raises(Unauthorized):
            await sign_in(uow, settings, cache, password="wrong", source=f"198.51.100.{n}")
    assert user.locked_until == NOW + dt.timedelta(seconds=settings.identity.first_wait_seconds)
    with pytest.raises(Unauthorized, match=sessions.WRONG_CREDENTIALS):
        await sign_in(uow, settings, cache, source="203.0.113.9")  # right password, must wait
    assert user.failed_logins == ceiling  # a refusal without a check is not a guess

    clock.advance(seconds=settings.identity.first_wait_seconds)
    assert (await sign_in(uow, settings, cache, source="203.0.113.9")).access_token


async def test_an_address_past_its_failures_is_refused_without_looking_at_the_account(
    repo: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    await enrol(repo)
    cache = MemoryCache()
    for n in range(settings.identity.address_failures_per_window):
        with pytest.raises(Unauthorized):
            await sign_in(uow, settings, cache, email=f"nobody{n}@stmary.example")
    reservations = repo.reservations
    with pytest.raises(TooManyRequests):
        await sign_in(uow, settings, cache)
    assert repo.reservations == reservations


async def test_an_enrolled_second_factor_is_required_and_its_first_use_confirms_it(
    repo: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    secret = pyotp.random_base32()
    user = await enrol(repo, totp_secret=secret)
    cache = MemoryCache()
    answers = []
    # Without a code, with a wrong one, and (the same answer) with a wrong password.
    for code, password, source in (
        (None, PASSWORD, "10.0.0.7"),
        ("000000", PASSWORD, "10.0.0.7"),
        ("000000", "wrong", "10.0.0.8"),
    ):
        with pytest.raises(Unauthorized) as refused:
            await sign_in(uow, settings, cache, totp=code, password=password, source=source)
        answers.append(answer_of(refused.value))
    assert answers == [answer_of(Unauthorized(sessions.WRONG_CREDENTIALS))] * 3
    assert [e.detail["reason"] for e in uow.audited(Outcome.FAILURE)] == [
        "one_time_code_missing",
        "one_time_code_wrong",
        "password",
    ]
    assert not user.mfa_enabled
    code = pyotp.TOTP(secret).at(NOW)
    assert (await sign_in(uow, settings, cache, totp=code)).access_token
    assert user.mfa_enabled


async def test_an_admin_of_an_organisation_that_requires_mfa_must_enrol_first(
    repo: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    await enrol(repo, role="admin", admin_mfa=True)
    with pytest.raises(Unauthorized) as refused:
        await sign_in(uow, settings, MemoryCache())
    # The right password, but answered as a wrong one: the code is what proves it.
    assert answer_of(refused.value) == answer_of(Unauthorized(sessions.WRONG_CREDENTIALS))
    (failure,) = uow.audited(Outcome.FAILURE)
    assert failure.detail["reason"] == "second_factor_not_enrolled"


async def test_a_disabled_account_gets_the_same_answer_as_a_wrong_password(
    repo: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    user = await enrol(repo)
    user.is_active = False
    with pytest.raises(Unauthorized, match=sessions.WRONG_CREDENTIALS):
        await sign_in(uow, settings, MemoryCache())
    (failure,) = uow.audited(Outcome.FAILURE)
    assert failure.object_id == user.id
    assert user.last_login_at is None


async def test_an_invited_user_cannot_sign_in_before_choosing_a_password(
    repo: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings
) -> None:
    user = await enrol(repo)
    user.password_hash = None
    with pytest.raises(Unauthorized, match=sessions.WRONG_CREDENTIALS):
        await sign_in(uow, settings, MemoryCache())
    assert [row for row in uow.session.added if isinstance(row, RefreshToken)] == []
