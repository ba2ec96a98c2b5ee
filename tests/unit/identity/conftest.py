"""Fixtures of the identity unit tests: a frozen clock, the fake repository and unit of work."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher

from medcloud.config import IdentitySettings, Settings
from medcloud.identity import repository
from medcloud.platform import security
from medcloud.platform.clock import FrozenClock
from tests.unit.identity.fakes import (
    NOW,
    FakeUnitOfWork,
    InMemoryRepository,
    repository_functions,
    seed_cast,
)


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cost of argon2 is not what these tests are about; production keeps the strong default.
    monkeypatch.setattr(
        security, "_hasher", [PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)]
    )


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def repo(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemoryRepository]:
    """The fake repository, in place of every query of the real one."""
    fake = InMemoryRepository()
    for name in repository_functions():
        monkeypatch.setattr(repository, name, getattr(fake, name))
    yield fake


@pytest.fixture
def uow(clock: FrozenClock, repo: InMemoryRepository) -> FakeUnitOfWork:
    return FakeUnitOfWork(clock, repo)


@pytest.fixture
def settings() -> Settings:
    return Settings(
        identity=IdentitySettings(
            failures_before_wait=3, account_failures_before_wait=6, address_failures_per_window=10
        )
    )


@pytest.fixture
async def st_marys(repo: InMemoryRepository) -> InMemoryRepository:
    """The repository holding St Mary's, Mallory Health and the cast (see `fakes.CAST`)."""
    await seed_cast(repo)
    return repo
