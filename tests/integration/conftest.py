from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from medcloud.config import Settings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.support.cast import Cast, build_cast
from tests.support.client import Api, running


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running(settings) as client:
        yield client


@pytest.fixture
async def alice(api: Api) -> str:
    """Alice, the organisation's admin (created from the bootstrap settings)."""
    return await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)


@pytest.fixture
async def cast(api: Api) -> Cast:
    """Two organisations, two wards, every role (see tests/support/cast.py)."""
    return await build_cast(api)
