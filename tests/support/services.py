"""The real services the suite runs against: reachability checks and per-test isolation."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import aio_pika
import asyncpg
import pytest
import redis.asyncio as redis

from medcloud.bootstrap import load_contexts

T = TypeVar("T")


@dataclass(frozen=True)
class ServiceUrls:
    """Where the services are (overridable for other machines)."""

    postgres: str
    amqp: str
    redis: str

    @classmethod
    def from_env(cls) -> ServiceUrls:
        return cls(
            postgres=os.environ.get(
                "MEDCLOUD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
            ),
            amqp=os.environ.get("MEDCLOUD_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/"),
            redis=os.environ.get("MEDCLOUD_TEST_REDIS", "redis://127.0.0.1:6379/15"),
        )

    def database_url(self, name: str) -> str:
        """The SQLAlchemy URL of database `name` on the test server."""
        base = self.postgres.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        return f"{base}/{name}"


def require(urls: ServiceUrls) -> None:
    """Fail the run, naming the service, when any of them is unreachable."""

    async def check() -> list[str]:
        missing = []
        try:
            connection = await asyncpg.connect(urls.postgres, timeout=5)
            await connection.close()
        except Exception as exc:  # noqa: BLE001
            missing.append(f"PostgreSQL at {urls.postgres}: {exc!r}")
        try:
            amqp = await aio_pika.connect(urls.amqp, timeout=5)
            await amqp.close()
        except Exception as exc:  # noqa: BLE001
            missing.append(f"RabbitMQ at {urls.amqp}: {exc!r}")
        try:
            client = redis.Redis.from_url(urls.redis, socket_timeout=5)
            await client.ping()
            await client.aclose()
        except Exception as exc:  # noqa: BLE001
            missing.append(f"Redis at {urls.redis}: {exc!r}")
        return missing

    missing = run_apart(check())
    if missing:
        pytest.fail(
            "MEDCLOUD_TEST_SERVICES=1 but unreachable: " + "; ".join(missing), pytrace=False
        )


def run_apart(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to completion from synchronous code, inside an event loop or not."""
    # Session fixtures are set up from whichever test first asks for them, maybe from inside that
    # test's event loop, where asyncio.run refuses: run on a thread with a loop of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def create_database(urls: ServiceUrls, name: str, *, template: str | None = None) -> str:
    """Create a database, empty or a copy of `template`, and return its SQLAlchemy URL."""
    connection = await asyncpg.connect(urls.postgres)
    try:
        copy = f' TEMPLATE "{template}"' if template else ""
        await connection.execute(f'CREATE DATABASE "{name}"{copy}')
    finally:
        await connection.close()
    return urls.database_url(name)


async def drop_database(urls: ServiceUrls, name: str) -> None:
    """Drop a test's database, closing any connection left to it."""
    connection = await asyncpg.connect(urls.postgres)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def queue_names(prefix: str) -> list[str]:
    """Every queue medcloud declares under `prefix`."""
    names = []
    for context in load_contexts():
        for subscription in context.subscriptions:
            queue = f"{prefix}.{context.name}.{subscription.handler.__name__}"
            names += [queue, f"{queue}.retry", f"{queue}.dlq"]
    return names


async def delete_rabbit_objects(urls: ServiceUrls, name: str) -> None:
    """Delete the exchanges and queues a test declared."""
    connection = await aio_pika.connect(urls.amqp)
    try:
        channel = await connection.channel()
        for queue in [*queue_names(name), f"{name}.x.unrouted"]:
            await channel.queue_delete(queue)
        for exchange in (f"{name}.x", f"{name}.x.unrouted"):
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()
