"""The app on a clock the tests move, and the named cast's tokens."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import AsyncIterator

import pytest

from medcloud.bootstrap import bootstrap
from medcloud.config import Settings
from medcloud.identity.models import Organisation
from medcloud.platform.clock import FrozenClock
from medcloud.platform.runtime import Runtime
from medcloud.platform.security import Role, UserPrincipal
from tests.support.client import Api, bearer, reading, running

ST_MARY = "org-stmary"
OTHER_ORG = "org-elsewhere"

_sequence = itertools.count(1)


@pytest.fixture
def clock() -> FrozenClock:
    """Time stands still until a test moves it."""
    return FrozenClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


@pytest.fixture
async def api(settings: Settings, clock: FrozenClock) -> AsyncIterator[Api]:
    built = bootstrap(settings, clock=clock)
    async with running(settings, runtime=built) as client:
        # The cast's tokens are minted for St Mary's; its patients need the organisation to exist.
        async with built.uow() as uow:
            uow.session.add(
                Organisation(
                    id=ST_MARY, name="St Mary's", created_at=clock.now(), require_admin_mfa=False
                )
            )
            await uow.commit()
        yield client


def runtime(api: Api) -> Runtime:
    value: Runtime = api.app.state.runtime
    return value


def _token(api: Api, user_id: str, organisation_id: str, role: Role) -> str:
    return runtime(api).tokens.issue(UserPrincipal(user_id, organisation_id, role))


@pytest.fixture
def alice_admin(api: Api) -> str:
    """Alice administers St Mary's."""
    return _token(api, "u-alice", ST_MARY, Role.ADMIN)


@pytest.fixture
def tom_technician(api: Api) -> str:
    """Tom keeps St Mary's devices running."""
    return _token(api, "u-tom", ST_MARY, Role.TECHNICIAN)


@pytest.fixture
def bob_clinician(api: Api) -> str:
    """Bob treats St Mary's patients; device credentials are none of his business."""
    return _token(api, "u-bob", ST_MARY, Role.CLINICIAN)


@pytest.fixture
def mallory_other_org(api: Api) -> str:
    """Mallory administers another organisation."""
    return _token(api, "u-mallory", OTHER_ORG, Role.ADMIN)


async def authenticates(api: Api, device: dict[str, str], token: str) -> bool:
    """Send a reading with `token`; tell whether it was accepted (rather than refused, 401)."""
    # Each reading a second further back, so that none is a duplicate of another.
    at = runtime(api).clock.now() - dt.timedelta(seconds=next(_sequence))
    response = await api.http.post(
        f"/api/v1/devices/{device['id']}/data",
        json=reading(at, heart_rate=70),
        headers=bearer(token),
    )
    assert response.status_code in (201, 401), response.text
    return response.status_code == 201
