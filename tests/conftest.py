"""Shared fixtures: a medcloud app per test, on the embedded default or on the real services.

With MEDCLOUD_TEST_SERVICES=1 every integration test also runs against PostgreSQL, RabbitMQ and
Redis, and a service that cannot be reached fails the run instead of skipping it. Each test's
database starts as a copy of one migrated once per run (see tests/support/template.py), unless
the test is marked `empty_database`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from medcloud.config import BusSettings, IdentitySettings, RateLimitSettings, Settings
from tests.support import services, template

SERVICES = os.environ.get("MEDCLOUD_TEST_SERVICES") == "1"
ADMIN_EMAIL = "alice.admin@stmary.example"
ADMIN_PASSWORD = "alice-admin-passphrase"

BACKENDS = ["embedded", pytest.param("services", marks=pytest.mark.services)]
RELAXED_LIMITS = "1000000/minute"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "empty_database: the test's database starts empty, not copied from the template"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SERVICES:
        return
    skip = pytest.mark.skip(reason="set MEDCLOUD_TEST_SERVICES=1 to run against the real services")
    for item in items:
        if "services" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def service_urls() -> Iterator[services.ServiceUrls]:
    """Check the real services once per run; fail loudly when one is missing."""
    urls = services.ServiceUrls.from_env()
    services.require(urls)
    yield urls


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedded database per run, migrated to head, for tests to copy."""
    var_dir = tmp_path_factory.mktemp("sqlite-template") / "var"
    return services.run_apart(template.create_sqlite_template(var_dir))


@pytest.fixture(scope="session")
def postgres_template(service_urls: services.ServiceUrls) -> Iterator[str]:
    """One PostgreSQL database per run, migrated to head, for tests to copy; dropped at the end."""
    name = services.run_apart(template.create_postgres_template(service_urls))
    try:
        yield name
    finally:
        services.run_apart(services.drop_database(service_urls, name))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which deployment shape the test runs on."""
    return str(request.param)


@pytest.fixture
async def settings(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Settings]:
    """Settings for one isolated deployment: its own database, exchange and queues.

    The database is at head already, unless the test is marked `empty_database`.
    """
    base = Settings(
        var_dir=tmp_path / "var",
        bootstrap_admin_email=ADMIN_EMAIL,
        bootstrap_admin_password=ADMIN_PASSWORD,
        bus=BusSettings(retry_backoff_seconds=0.05, relay_poll_seconds=0.1),
        # Hashing cost is not what these tests are about; production keeps the strong default.
        identity=IdentitySettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1),
        # Tests make far more requests per user and address than anyone may; limits no test
        # reaches keep every request counted. tests/integration/platform/test_rate_limits.py
        # puts the real ones back.
        rate_limits=RateLimitSettings(
            default=RELAXED_LIMITS, ingest=RELAXED_LIMITS, anonymous=RELAXED_LIMITS
        ),
    )
    empty = request.node.get_closest_marker("empty_database") is not None
    if backend == "embedded":
        if not empty:
            template.copy_sqlite_template(request.getfixturevalue("sqlite_template"), base)
        yield base
        return
    urls: services.ServiceUrls = request.getfixturevalue("service_urls")
    name = f"medcloud_t_{uuid.uuid4().hex[:12]}"
    source = None if empty else request.getfixturevalue("postgres_template")
    database_url = await services.create_database(urls, name, template=source)
    tagged = base.model_copy(
        update={
            "database_url": database_url,
            "bus_url": urls.amqp,
            "redis_url": urls.redis,
            "redis_prefix": f"{name}:",
            "bus": base.bus.model_copy(update={"exchange": f"{name}.x", "queue_prefix": name}),
        }
    )
    try:
        yield tagged
    finally:
        await services.drop_database(urls, name)
        await services.delete_rabbit_objects(urls, name)
