"""The limits on guessing passwords, over the fake unit of work: waits per email and address,
the account-wide ceiling that known addresses are spared, the per-address budget sized for a
ward behind one NAT, one answer and one hash for every refusal, and what is audited."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from medcloud.config import IdentitySettings, Settings
from medcloud.identity import sessions, throttling, users
from medcloud.identity.models import UserAccount
from medcloud.identity.schemas import TokenRead
from medcloud.platform.audit import AuditRecorded, Outcome
from medcloud.platform.cache import MemoryCache
from medcloud.platform.clock import FrozenClock
from medcloud.platform.errors import DomainError, NotFound, TooManyRequests, Unauthorized
from medcloud.platform.security import hash_password, verify_password
from tests.unit.identity.fakes import (
    ALICE,
    CAROL,
    MALLORY,
    NINA,
    NOW,
    PASSWORD,
    ST_MARYS,
    FakeUnitOfWork,
    InMemoryRepository,
    token_service,
)

WARD = "10.20.0.1"
"""The Cardiology ward's one public address (a NAT): where nina signs in from."""
HOME = "192.0.2.10"
ATTACKER = "203.0.113.66"
NOBODY = "nobody@stmary.example"


def botnet(n: int) -> str:
    return f"198.51.100.{n}"


@pytest.fixture
def cache() -> MemoryCache:
    return MemoryCache()


@pytest.fixture
def hashes_checked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every hash a password was verified against, in order."""
    checked: list[str] = []
    real = verify_password

    async def recording(password_hash: str, password: str) -> bool:
        checked.append(password_hash)
        return await real(password_hash, password)

    monkeypatch.setattr(sessions, "verify_password", recording)
    return checked


async def sign_in(
    uow: FakeUnitOfWork,
    settings: Settings,
    cache: MemoryCache,
    *,
    email: str = NINA.email,
    password: str = PASSWORD,
    source: str = WARD,
) -> TokenRead:
    return await sessions.sign_in(
        uow=uow.port,
        tokens=token_service(uow.clock),
        cache=cache,
        settings=settings,
        email=email,
        password=password,
        totp=None,
        source=source,
    )


async def refused(
    uow: FakeUnitOfWork, settings: Settings, cache: MemoryCache, **kwargs: str
) -> DomainError:
    """Sign in, expecting a refusal; return it."""
    with pytest.raises(DomainError) as raised:
        await sign_in(uow, settings, cache, **kwargs)
    return raised.value


def answer_of(error: DomainError) -> tuple[object, ...]:
    """Everything of a refusal that reaches the caller."""
    return type(error), error.status, error.detail, error.errors, error.headers


def nina(repo: InMemoryRepository) -> UserAccount:
    (found,) = [u for u in repo.all(UserAccount) if u.id == NINA.name]
    return found


def locks(uow: FakeUnitOfWork) -> list[AuditRecorded]:
    return uow.audited(action="auth.lock")


# --- the schedule --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "wait"),
    [(0, 0), (4, 0), (5, 1), (6, 2), (7, 4), (10, 32), (14, 512), (15, 900), (10_000, 900)],
)
def test_the_wait_starts_after_five_failures_and_doubles_up_to_fifteen_minutes(
    failures: int, wait: float
) -> None:
    assert throttling.address_wait(IdentitySettings(), failures) == wait


def test_the_account_wide_wait_starts_after_twenty_failures() -> None:
    defaults = IdentitySettings()
    waits = [throttling.account_wait(defaults, n) for n in (19, 20, 21, 30, 31)]
    assert waits == [0, 1, 2, 900, 900]


def test_the_removed_lockout_settings_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="lockout_threshold was removed"):
        IdentitySettings.model_validate({"lockout_threshold": 5})


# --- per email and address -----------------------------------------------------------------------


async def test_wrong_passwords_from_one_address_do_not_stop_nina_signing_in_from_another(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings, cache: MemoryCache
) -> None:
    for _ in range(settings.identity.failures_before_wait + 2):
        error = await refused(uow, settings, cache, password="guess", source=ATTACKER)
        assert isinstance(error, Unauthorized | TooManyRequests)
    assert isinstance(await refused(uow, settings, cache, source=ATTACKER), TooManyRequests)

    assert (await sign_in(uow, settings, cache, source=WARD)).access_token


async def test_each_further_failure_doubles_the_address_wait_up_to_the_longest(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, clock: FrozenClock, cache: MemoryCache
) -> None:
    settings = Settings(identity=IdentitySettings(failures_before_wait=3, longest_wait_seconds=60))
    for _ in range(settings.identity.failures_before_wait - 1):
        await refused(uow, settings, cache, password="guess", source=ATTACKER)
    waits = []
    for _ in range(9):
        assert isinstance(
            await refused(uow, settings, cache, password="guess", source=ATTACKER), Unauthorized
        )
        early = await refused(uow, settings, cache, source=ATTACKER)  # the right password, too
        assert isinstance(early, TooManyRequests)
        waits.append(int(early.headers["Retry-After"]))
        clock.advance(seconds=waits[-1] - 0.5)
        assert isinstance(await refused(uow, settings, cache, source=ATTACKER), TooManyRequests)
        clock.advance(seconds=0.5)
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]


async def test_a_right_password_from_the_address_clears_its_count(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings, cache: MemoryCache
) -> None:
    typos = settings.identity.failures_before_wait - 1
    for _ in range(typos):
        await refused(uow, settings, cache, password="typo", source=WARD)
    assert (await sign_in(uow, settings, cache, source=WARD)).access_token
    for _ in range(typos):
        await refused(uow, settings, cache, password="typo", source=WARD)
    # Had the first typos still counted, this would be past the free failures and wait.
    assert (await sign_in(uow, settings, cache, source=WARD)).access_token


async def test_an_unknown_email_waits_exactly_as_a_known_one(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings, cache: MemoryCache
) -> None:
    answers: dict[str, list[tuple[object, ...]]] = {NINA.email: [], NOBODY: []}
    for _ in range(settings.identity.failures_before_wait + 1):
        for email in answers:
            error = await refused(uow, settings, cache, email=email, password="guess")
            answers[email].append(answer_of(error))
    assert answers[NINA.email] == answers[NOBODY]
    assert answers[NOBODY][-1][0] is TooManyRequests


# --- the account-wide ceiling --------------------------------------------------------------------


async def test_a_botnet_gets_the_ceiling_of_guesses_and_nina_still_signs_in_from_her_ward(
    st_marys: InMemoryRepository,
    uow: FakeUnitOfWork,
    settings: Settings,
    clock: FrozenClock,
    cache: MemoryCache,
    hashes_checked: list[str],
) -> None:
    await sign_in(uow, settings, cache, source=WARD)  # the ward becomes a known address
    ninas_hash = nina(st_marys).password_hash
    hashes_checked.clear()

    for n in range(40):
        error = await refused(uow, settings, cache, password=f"guess-{n}", source=botnet(n))
        assert answer_of(error) == answer_of(Unauthorized(sessions.WRONG_CREDENTIALS))
    ceiling = settings.identity.account_failures_before_wait
    assert hashes_checked.count(ninas_hash or "") == ceiling  # the rest never reached it
    assert len(hashes_checked) == 40  # yet each refusal verified one hash
    assert nina(st_marys).failed_logins == ceiling

    # Even her right password waits on a new address; on the ward it does not.
    await refused(uow, settings, cache, source=HOME)
    assert (await sign_in(uow, settings, cache, source=WARD)).access_token
    # A success past the ceiling gives the botnet no fresh allowance.
    assert nina(st_marys).failed_logins == ceiling
    clock.advance(seconds=settings.identity.first_wait_seconds)
    assert (await sign_in(uow, settings, cache, source=HOME)).access_token


async def test_an_account_past_the_ceiling_waits_longer_with_each_failure(
    st_marys: InMemoryRepository,
    uow: FakeUnitOfWork,
    settings: Settings,
    clock: FrozenClock,
    cache: MemoryCache,
) -> None:
    ceiling = settings.identity.account_failures_before_wait
    for n in range(ceiling):
        await refused(uow, settings, cache, password="guess", source=botnet(n))
    waits = []
    for n in range(4):
        waits.append((nina(st_marys).locked_until or NOW) - clock.now())
        clock.advance(seconds=waits[-1].total_seconds())
        await refused(uow, settings, cache, password="guess", source=botnet(100 + n))
    assert [w.total_seconds() for w in waits] == [1, 2, 4, 8]


async def test_failures_are_forgotten_after_a_quiet_day(
    st_marys: InMemoryRepository,
    uow: FakeUnitOfWork,
    settings: Settings,
    clock: FrozenClock,
    cache: MemoryCache,
) -> None:
    ceiling = settings.identity.account_failures_before_wait
    for n in range(ceiling):
        await refused(uow, settings, cache, password="guess", source=botnet(n))
    clock.advance(hours=settings.identity.failures_forgotten_after_hours, seconds=2)
    await refused(uow, settings, cache, password="typo", source=HOME)
    assert (nina(st_marys).failed_logins, nina(st_marys).locked_until) == (1, clock.now())


async def test_typos_below_the_ceiling_are_forgotten_after_a_quiet_day_too(
    st_marys: InMemoryRepository,
    uow: FakeUnitOfWork,
    settings: Settings,
    clock: FrozenClock,
    cache: MemoryCache,
) -> None:
    for n in range(settings.identity.account_failures_before_wait - 1):
        await refused(uow, settings, cache, password="typo", source=botnet(n))
    clock.advance(hours=settings.identity.failures_forgotten_after_hours, seconds=1)
    await refused(uow, settings, cache, password="typo", source=HOME)
    assert nina(st_marys).failed_logins == 1


async def test_refusals_for_a_waiting_account_an_unknown_email_a_disabled_account_and_a_wrong_password_are_alike(  # noqa: E501
    st_marys: InMemoryRepository,
    uow: FakeUnitOfWork,
    settings: Settings,
    cache: MemoryCache,
    hashes_checked: list[str],
) -> None:
    waiting = nina(st_marys)
    waiting.failed_logins = settings.identity.account_failures_before_wait
    waiting.locked_until = NOW + dt.timedelta(minutes=15)
    disabled = UserAccount(
        id="dora_disabled",
        organisation_id=ST_MARYS,
        email="dora@stmary.example",
        password_hash=await hash_password(PASSWORD),
        role="nurse",
        is_active=False,
        created_at=NOW,
        failed_logins=0,
        mfa_enabled=False,
    )
    st_marys.put(disabled)
    cases = {
        "waiting, with the right password": {"email": NINA.email},
        "unknown email": {"email": NOBODY},
        "disabled, with the right password": {"email": disabled.email},
        "wrong password": {"email": CAROL.email, "password": "not-" + PASSWORD},
    }
    own_hashes = {u.password_hash for u in st_marys.all(UserAccount)}
    answers = {}
    for name, kwargs in cases.items():
        hashes_checked.clear()
        answers[name] = answer_of(await refused(uow, settings, cache, source=HOME, **kwargs))
        assert len(hashes_checked) == 1, name
        # A hash of the same cost whichever it is; only a password that could open the account
        # meets the account's own.
        assert (hashes_checked[0] in own_hashes) is (name == "wrong password"), name
    assert list(answers.values()) == [answers["wrong password"]] * len(cases), answers
    reasons = [e.detail["reason"] for e in uow.audited(Outcome.FAILURE)]
    assert reasons == ["account_waiting", "unknown_email", "disabled", "password"]


# --- the address's budget ------------------------------------------------------------------------


async def test_thirty_nurses_behind_one_address_with_typos_are_not_throttled(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, cache: MemoryCache
) -> None:
    settings = Settings()  # the shipped budget
    password_hash = await hash_password(PASSWORD)
    ward = [f"nurse{n:02d}@stmary.example" for n in range(30)]
    st_marys.put(
        *(
            UserAccount(
                id=f"nurse-{n:02d}",
                organisation_id=ST_MARYS,
                email=email,
                password_hash=password_hash,
                role="nurse",
                is_active=True,
                created_at=NOW,
                failed_logins=0,
                mfa_enabled=False,
            )
            for n, email in enumerate(ward)
        )
    )
    # A shift change: everyone signs in, two typos first each, within one window.
    for email in ward:
        for typo in ("typo-1", "typo-2"):
            error = await refused(uow, settings, cache, email=email, password=typo)
            assert isinstance(error, Unauthorized)
        assert (await sign_in(uow, settings, cache, email=email)).access_token
    assert len(uow.audited(Outcome.SUCCESS, action="auth.login")) == 30


async def test_successful_sign_ins_do_not_spend_the_addresses_budget(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings, cache: MemoryCache
) -> None:
    budget = settings.identity.address_failures_per_window
    for n in range(budget - 1):
        await refused(uow, settings, cache, email=f"stranger{n}@stmary.example")
        assert (await sign_in(uow, settings, cache)).access_token
    assert isinstance(await refused(uow, settings, cache, email=NOBODY), Unauthorized)
    assert isinstance(await refused(uow, settings, cache), TooManyRequests)


async def test_the_addresses_budget_is_renewed_with_each_window(
    st_marys: InMemoryRepository,
    uow: FakeUnitOfWork,
    settings: Settings,
    clock: FrozenClock,
    cache: MemoryCache,
) -> None:
    for n in range(settings.identity.address_failures_per_window):
        await refused(uow, settings, cache, email=f"stranger{n}@stmary.example")
    throttled = await refused(uow, settings, cache)
    assert isinstance(throttled, TooManyRequests)
    retry_after = int(throttled.headers["Retry-After"])
    assert 0 < retry_after <= settings.identity.address_window_seconds
    clock.advance(seconds=retry_after)
    assert (await sign_in(uow, settings, cache)).access_token


# --- locks and unlocks ---------------------------------------------------------------------------


async def test_a_wait_starting_is_audited_as_a_lock_once_per_scope(
    st_marys: InMemoryRepository,
    uow: FakeUnitOfWork,
    settings: Settings,
    clock: FrozenClock,
    cache: MemoryCache,
) -> None:
    for _ in range(settings.identity.failures_before_wait):
        await refused(uow, settings, cache, password="guess", source=ATTACKER)
    (address_lock,) = locks(uow)
    assert address_lock.detail["scope"] == "address"
    assert address_lock.detail["wait_seconds"] == settings.identity.first_wait_seconds
    assert (address_lock.object_id, address_lock.organisation_id) == (NINA.name, ST_MARYS)
    clock.advance(seconds=1)
    await refused(uow, settings, cache, password="guess", source=ATTACKER)  # longer, no new lock
    assert len(locks(uow)) == 1

    so_far = settings.identity.failures_before_wait + 1
    for n in range(settings.identity.account_failures_before_wait - so_far):
        await refused(uow, settings, cache, password="guess", source=botnet(n))
    scopes = [lock.detail["scope"] for lock in locks(uow)]
    assert scopes == ["address", "account"]
    assert all(lock.outcome == Outcome.SUCCESS for lock in locks(uow))


async def test_alice_unlocking_nina_lifts_every_wait_and_is_audited(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, settings: Settings, cache: MemoryCache
) -> None:
    for n in range(settings.identity.account_failures_before_wait):
        await refused(uow, settings, cache, password="guess", source=botnet(n % 3))
    for source in (botnet(0), HOME):
        await refused(uow, settings, cache, source=source)  # waits, right password or not

    await users.unlock_user(uow=uow.port, cache=cache, principal=ALICE.principal, user_id=NINA.name)

    (unlock,) = uow.audited(action="auth.unlock")
    assert (unlock.actor_id, unlock.object_id) == (ALICE.name, NINA.name)
    assert unlock.detail == {
        "failed_logins": settings.identity.account_failures_before_wait,
        "account_waiting": True,
    }
    for source in (botnet(0), HOME):
        assert (await sign_in(uow, settings, cache, source=source)).access_token


async def test_mallory_cannot_unlock_a_user_of_another_organisation(
    st_marys: InMemoryRepository, uow: FakeUnitOfWork, cache: MemoryCache
) -> None:
    with pytest.raises(NotFound):
        await users.unlock_user(
            uow=uow.port, cache=cache, principal=MALLORY.principal, user_id=NINA.name
        )
    assert uow.audited(action="auth.unlock") == []
