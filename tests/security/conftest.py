"""One deployment for the whole security suite, per backend: the cast, and an estate in each
organisation (St Mary's Cardiology, and Mallory Health) with one object of every kind.

Building the cast and the estates takes seconds; the suite sends thousands of requests that
change nothing (they are refused), so it shares one running app instead of starting one per
test. Tests that must change settings or break something start an app of their own with
`own_settings`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from medcloud.config import BusSettings, IdentitySettings, RateLimitSettings, Settings
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, BACKENDS
from tests.support import services, template
from tests.support.cast import Cast, build_cast
from tests.support.client import Api, running
from tests.support.estate import Estate, furnish

RELAXED = "1000000/minute"


@dataclass
class Deployment:
    """The running app, its cast, and the two estates the route table is filled from."""

    api: Api
    cast: Cast
    ours: Estate
    """St Mary's, seen from Cardiology: Peter, his oximeter, carol (on call)."""
    theirs: Estate
    """Mallory Health: its patient, device and clinician."""
    settings: Settings


@pytest.fixture(scope="package", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which deployment shape the suite runs on (one deployment per shape)."""
    return str(request.param)


@contextlib.asynccontextmanager
async def own_settings(
    backend: str, var_dir: Path, request: pytest.FixtureRequest, **changes: Any
) -> AsyncIterator[Settings]:
    """Settings for one isolated deployment on `backend`, its database copied from the
    migrated template (as tests/conftest.py's `settings` fixture does, at any scope)."""
    base = Settings(
        var_dir=var_dir,
        bootstrap_admin_email=ADMIN_EMAIL,
        bootstrap_admin_password=ADMIN_PASSWORD,
        bus=BusSettings(retry_backoff_seconds=0.05, relay_poll_seconds=0.1),
        # Hashing cost is not what these tests are about; production keeps the strong default.
        identity=IdentitySettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1),
        # The suite sends thousands of requests as a handful of people; the limits themselves
        # are tested in test_resources.py with their defaults.
        rate_limits=RateLimitSettings(default=RELAXED, ingest=RELAXED, anonymous=RELAXED),
    ).model_copy(update=changes)
    if backend == "embedded":
        template.copy_sqlite_template(request.getfixturevalue("sqlite_template"), base)
        yield base
        return
    urls: services.ServiceUrls = request.getfixturevalue("service_urls")
    name = f"medcloud_s_{uuid.uuid4().hex[:12]}"
    database_url = await services.create_database(
        urls, name, template=request.getfixturevalue("postgres_template")
    )
    try:
        yield base.model_copy(
            update={
                "database_url": database_url,
                "bus_url": urls.amqp,
                "redis_url": urls.redis,
                "redis_prefix": f"{name}:",
                "bus": base.bus.model_copy(update={"exchange": f"{name}.x", "queue_prefix": name}),
            }
        )
    finally:
        await services.drop_database(urls, name)
        await services.delete_rabbit_objects(urls, name)


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def deployment(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Deployment]:
    """The shared deployment, with the cast and both estates."""
    var_dir = tmp_path_factory.mktemp("security") / "var"
    async with own_settings(backend, var_dir, request) as settings, running(settings) as api:
        cast = await build_cast(api)
        ours = await furnish(
            api,
            cast,
            admin="alice_admin",
            clinician="carol_clinician",
            clinician_email="carol_clinician@stmary.example",
            patient="peter",
            device="peters_oximeter",
            ward="cardiology",
            firmware_objects=cast.firmware,
        )
        theirs = await furnish(
            api,
            cast,
            admin="mallory_other_org",
            clinician="mallory_clinician",
            clinician_email="clinician@mallory.example",
            patient="mallorys_patient",
            device="mallorys_device",
            ward="mallory",
        )
        yield Deployment(api, cast, ours, theirs, settings)
