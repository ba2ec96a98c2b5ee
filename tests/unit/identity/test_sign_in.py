"""Signing in, as a use case over a fake unit of work and an in-memory repository: no database.

What is checked here is the policy (lockout, address throttling, one answer for every failure,
the second factor, what is audited); the integration tests check the same over HTTP and SQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from medcloud.config import IdentitySettings, Settings
from medcloud.identity import repository, sessions
from medcloud.identity.models import Organisation, RefreshToken, UserAccount
from medcloud.platform.audit import Outcome
from medcloud.platform.cache import MemoryCache
from medcloud.platform.clock import FrozenClock
from medcloud.platform.errors import TooManyRequests, Unauthorized
from medcloud.platform.events import Event
from medcloud.platform.security import TokenKeys, TokenService, hash_password
from medcloud.platform.uow import UnitOfWork

NOW = dt.datetime(2026, 12, 5, 9, 0, tzinfo=dt.UTC)
EMAIL = "nina.nurse@stmary.example"
PASSWORD = "correct horse battery staple"


@dataclass
class FakeSession:
    added: list[object] = field(default_factory=list)

    def add(self, row: object) -> None:
        self.added.append(row)


class FakeUnitOfWork:
    """Collects what a use case adds and publishes; `committed` holds what it committed."""

    def __init__(self, clock: FrozenClock) -> None:
        self.clock = clock
        self.session = FakeSession()
        self.pending: list[Event] = []
        self.committed: list[Event] = []

    async def __aenter__(self) -> FakeUnitOfWork:
        self.pending = []
        return self

    async def __aexit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.pending = []

    def publish(self, event: Event) -> None:
        self.pending.append(event)

    async def commit(self) -> None:
        self.committed += self.pending
        self.pending = []

    def audited(self, outcome: Outcome) -> list[Any]:
        return [e for e in self.committed if getattr(e, "outcome", None) == outcome]


class Accounts:
    """The identity repository's sign-in queries, over a dict: same contract, no SQL."""

    def __init__(self) -> None:
        self.users: dict[str, UserAccount] = {}
        self.organisations: dict[str, Organisation] = {}
        self.reservations = 0

    async def reserve_login_attempt(
        self, _session: object, email: str, now: dt.datetime
    ) -> tuple[str, int] | None:
        self.reservations += 1
        user = next((u for u in self.users.values() if u.email == email.lower()), None)
        if user is None or (user.locked_until is not None and user.locked_until >= now):
            return None
        expired = user.locked_until is not None and user.locked_until < now
        user.failed_logins = 1 if expired else user.failed_logins + 1
        user.locked_until = None
        return user.id, user.failed_logins

    async def get_user_by_email(self, _session: object, email: str) -> UserAccount | None:
        return next((u for u in self.users.values() if u.email == email.lower()), None)

    async def get_user(self, _session: object, user_id: str) -> UserAccount | None:
        return self.users.get(user_id)

    async def get_organisation(self, _session: object, organisation_id: str) -> Organisation | None:
        return self.organisations.get(organisation_id)

    async def lock_user(self, _session: object, user_id: str, until: dt.datetime) -> None:
        self.users[user_id].locked_until = until


@pytest.fixture
def accounts(monkeypatch: pytest.MonkeyPatch) -> Iterator[Accounts]:
    fake = Accounts()
    for name in (
        "reserve_login_attempt",
        "get_user_by_email",
        "get_user",
        "get_organisation",
        "lock_user",
    ):
        monkeypatch.setattr(repository, name, getattr(fake, name))
    yield fake


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def uow(clock: FrozenClock) -> FakeUnitOfWork:
    return FakeUnitOfWork(clock)


@pytest.fixture
def settings() -> Settings:
    return Settings(identity=IdentitySettings(lockout_threshold=3, address_failures_per_window=10))


async def enrol(
    accounts: Accounts,
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
    accounts.organisations[organisation.id] = organisation
    accounts.users[user.id] = user
    return user


async def sign_in(
    uow: FakeUnitOfWork,
    settings: Settings,
    cache: MemoryCache,
    *,
    password: str = PASSWORD,
    email: str = EMAIL,
    totp: str | None = None,
) -> Any:
    tokens = TokenService(
        TokenKeys(Ed25519PrivateKey.generate()),
        issuer="medcloud",
        audience="medcloud-api",
        lifetime=dt.timedelta(minutes=15),
        clock=uow.clock,
    )
    return await sessions.sign_in(
        uow=cast(UnitOfWork, uow),
        tokens=tokens,
        cache=cache,
        settings=settings,
        email=email,
        password=password,
        totp=totp,
        source="10.0.0.7",
    )


async def test_the_right_password_opens_a_session_and_clears_the_failures(
    accounts: Accounts, uow: FakeUnitOfWork, settings: Settings
) -> None:
    user = await enrol(accounts)
    user.failed_logins = 2
    answer = await sign_in(uow, settings, MemoryCache())
    assert answer.access_token and answer.refresh_token.startswith(sessions.REFRESH_PREFIX)
    assert (user.failed_logins, user.last_login_at) == (0, NOW)
    (stored,) = [row for row in uow.session.added if isinstance(row, RefreshToken)]
    assert stored.token_hash != answer.refresh_token  # only a digest is kept
    assert [e.action for e in uow.audited(Outcome.SUCCESS)] == ["auth.login"]


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(
    accounts: Accounts, uow: FakeUnitOfWork, settings: Settings
) -> None:
    await enrol(accounts)
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
    assert await cache.get("login-failures:10.0.0.7") == b"2"


async def test_the_account_locks_after_the_threshold_even_against_the_right_password(
    accounts: Accounts, uow: FakeUnitOfWork, settings: Settings, clock: FrozenClock
) -> None:
    user = await enrol(accounts)
    cache = MemoryCache()
    for _ in range(settings.identity.lockout_threshold):
        with pytest.raises(Unauthorized):
            await sign_in(uow, settings, cache, password="wrong")
    assert user.locked_until is None
    with pytest.raises(Unauthorized):
        await sign_in(uow, settings, cache)  # one attempt too many, right password or not
    assert user.locked_until == NOW + dt.timedelta(minutes=settings.identity.lockout_minutes)
    with pytest.raises(Unauthorized):
        await sign_in(uow, settings, cache)

    clock.advance(minutes=settings.identity.lockout_minutes + 1)
    assert (await sign_in(uow, settings, cache)).access_token


async def test_an_address_past_its_failures_is_refused_without_looking_at_the_account(
    accounts: Accounts, uow: FakeUnitOfWork, settings: Settings
) -> None:
    await enrol(accounts)
    cache = MemoryCache()
    limit = settings.identity.address_failures_per_window
    await cache.set("login-failures:10.0.0.7", str(limit).encode(), ttl_seconds=60)
    with pytest.raises(TooManyRequests):
        await sign_in(uow, settings, cache)
    assert accounts.reservations == 0


async def test_an_enrolled_second_factor_is_required_and_its_first_use_confirms_it(
    accounts: Accounts, uow: FakeUnitOfWork, settings: Settings
) -> None:
    secret = pyotp.random_base32()
    user = await enrol(accounts, totp_secret=secret)
    cache = MemoryCache()
    for code in (None, "000000"):
        with pytest.raises(Unauthorized) as refused:
            await sign_in(uow, settings, cache, totp=code)
        assert [e.field for e in refused.value.errors] == ["totp"]
    assert not user.mfa_enabled
    code = pyotp.TOTP(secret).at(NOW)
    assert (await sign_in(uow, settings, cache, totp=code)).access_token
    assert user.mfa_enabled


async def test_an_admin_of_an_organisation_that_requires_mfa_must_enrol_first(
    accounts: Accounts, uow: FakeUnitOfWork, settings: Settings
) -> None:
    await enrol(accounts, role="admin", admin_mfa=True)
    with pytest.raises(Unauthorized, match="enrol"):
        await sign_in(uow, settings, MemoryCache())
