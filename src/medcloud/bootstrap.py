"""The composition root: builds every dependency from settings, and starts and stops them."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import importlib
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.engine import make_url

from medcloud.config import Settings
from medcloud.platform.bus import Bus, Consumer, InProcessBus, inject
from medcloud.platform.cache import Cache, MemoryCache, RedisCache
from medcloud.platform.clock import Clock, SystemClock, SystemTimer
from medcloud.platform.context import Context, Hook, Runs
from medcloud.platform.datadir import make_private_directory, prepare_data_directory
from medcloud.platform.db import create_database, sessionmakers
from medcloud.platform.lease import Leases, held_gauge, holder_id, lead
from medcloud.platform.metrics import Metrics
from medcloud.platform.migrate import migrate
from medcloud.platform.objects import (
    DirectoryObjectStore,
    ObjectStore,
    S3ObjectStore,
    parse_s3_url,
)
from medcloud.platform.outbox import OutboxRelay
from medcloud.platform.ratelimit import create_rate_limiter
from medcloud.platform.runtime import Runtime
from medcloud.platform.sealing import bind, check_keys, load_sealer
from medcloud.platform.security import TokenKeys, TokenService, configure_password_hashing
from medcloud.platform.uow import UnitOfWork

log = structlog.get_logger(__name__)

# Notifications before analytics: its `/api/v1/alerts/stream` must be matched before the
# alert list's `/api/v1/alerts/{alert_id}` when one process serves both.
ALL_CONTEXTS = (
    "identity",
    "devices",
    "ingest",
    "notifications",
    "analytics",
    "audit",
    "interop",
    "reports",
)
IN_PROCESS_PIPELINE = 4
"""Relay batches the in-process bus may hold at once."""


def load_contexts(names: Iterable[str] = ALL_CONTEXTS) -> list[Context]:
    """Import the named contexts and return their `CONTEXT`s."""
    contexts = []
    for name in names:
        if name not in ALL_CONTEXTS:
            raise ValueError(f"unknown context {name!r}; known: {', '.join(ALL_CONTEXTS)}")
        contexts.append(importlib.import_module(f"medcloud.{name}").CONTEXT)
    return contexts


def bootstrap(
    settings: Settings,
    *,
    clock: Clock | None = None,
    bus: Bus | None = None,
    cache: Cache | None = None,
    objects: ObjectStore | None = None,
) -> Runtime:
    """Build the runtime for `settings`; pass fakes to replace any external part."""
    # Imported here: contexts implement the published interfaces the platform hands out.
    from medcloud.analytics.directory import SqlAlarmHistory
    from medcloud.devices.directory import SqlDeviceDirectory
    from medcloud.devices.discovery import SqlEquipmentRegistry
    from medcloud.identity.admissions import SqlPatientRegistry
    from medcloud.identity.directory import SqlCareDirectory, SqlPatientDirectory
    from medcloud.ingest.directory import SqlReadingHistory

    clock = clock or SystemClock()
    configure_password_hashing(
        time_cost=settings.identity.argon2_time_cost,
        memory_kib=settings.identity.argon2_memory_kib,
        parallelism=settings.identity.argon2_parallelism,
    )
    # Before any key file, object or database file is made in it, so each is born private.
    prepare_data_directory(settings.var_dir, sqlite_file=_sqlite_file(settings))
    database = create_database(
        settings.resolved_database_url,
        read_url=settings.database_read_url,
        pool_size=settings.db_pool_size,
    )
    bind(database, load_sealer(settings))
    write_sessions, read_sessions, replica_sessions = sessionmakers(database)
    bus = bus or create_bus(settings)
    metrics = Metrics()
    if settings.jwt_jwks_url:
        keys = TokenKeys(None)  # verify-only: the JWKS is fetched when the process starts
    elif settings.jwt_private_key is not None:
        keys = TokenKeys.from_pem(
            settings.jwt_private_key.get_secret_value(),
            retired_pems=settings.jwt_previous_public_keys,
        )
    else:
        keys = TokenKeys.from_directory(settings.var_dir / "keys")
    tokens = TokenService(
        keys,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        lifetime=dt.timedelta(minutes=settings.access_token_minutes),
        clock=clock,
    )
    relay = OutboxRelay(
        sessions=write_sessions,
        bus=bus,
        clock=clock,
        metrics=metrics,
        batch_size=settings.bus.relay_batch_size,
        poll_seconds=settings.bus.relay_poll_seconds,
        claim_seconds=settings.bus.relay_claim_seconds,
        listen_dsn=_asyncpg_dsn(settings.resolved_database_url),
        # In process, a batch on the bus is only its consumers' work: with a few in flight each
        # consumer takes the next as soon as it is free (see InProcessBus). A broker's queues
        # decouple consumers already, and keep one batch at a time in publish order.
        pipeline=IN_PROCESS_PIPELINE if isinstance(bus, InProcessBus) else 1,
    )
    cache = cache or (
        RedisCache(settings.redis_url, prefix=settings.redis_prefix)
        if settings.redis_url
        else MemoryCache()
    )

    def uow() -> UnitOfWork:
        return UnitOfWork(write_sessions, clock=clock, relay=relay)

    return Runtime(
        settings=settings,
        database=database,
        write_sessions=write_sessions,
        read_sessions=read_sessions,
        replica_sessions=replica_sessions,
        bus=bus,
        cache=cache,
        clock=clock,
        metrics=metrics,
        tokens=tokens,
        relay=relay,
        devices=SqlDeviceDirectory(read_sessions, clock, write_sessions=write_sessions),
        patients=SqlPatientDirectory(read_sessions),
        care=SqlCareDirectory(read_sessions, clock),
        readings=SqlReadingHistory(read_sessions),
        equipment=SqlEquipmentRegistry(uow, cache),
        patient_registry=SqlPatientRegistry(uow),
        objects=objects or create_object_store(settings),
        # Reports may lag: they read the replica when there is one.
        alarm_history=SqlAlarmHistory(replica_sessions),
        rate_limiter=create_rate_limiter(settings, clock),
    )


def _sqlite_file(settings: Settings) -> Path | None:
    """Return the embedded database's file; None for PostgreSQL or an in-memory database."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def _asyncpg_dsn(url: str) -> str | None:
    """Return a PostgreSQL URL as asyncpg takes it; None for any other database."""
    if not url.startswith("postgresql"):
        return None
    return "postgresql://" + url.split("://", 1)[1]


def create_bus(settings: Settings) -> Bus:
    """Build the bus adapter the settings name."""
    if settings.bus_url.startswith("memory"):
        return InProcessBus(
            max_attempts=settings.bus.max_attempts,
            backoff_seconds=settings.bus.retry_backoff_seconds,
        )
    if settings.bus_url.startswith("amqp"):
        from medcloud.platform.rabbitmq import RabbitMQBus

        return RabbitMQBus(
            settings.bus_url,
            exchange=settings.bus.exchange,
            queue_prefix=settings.bus.queue_prefix,
            max_attempts=settings.bus.max_attempts,
            backoff_seconds=settings.bus.retry_backoff_seconds,
            prefetch=settings.bus.prefetch,
        )
    raise ValueError(f"unsupported bus URL scheme: {settings.bus_url.split(':', 1)[0]}")


def create_object_store(settings: Settings) -> ObjectStore:
    """Build the object store adapter the settings name (no connection is made here)."""
    url = settings.objects.url
    if not url:
        return DirectoryObjectStore(settings.var_dir / "objects")
    if url.startswith("file://"):
        return DirectoryObjectStore(Path(url.removeprefix("file://")))
    if url.startswith("s3://"):
        bucket, prefix = parse_s3_url(url)
        secret = settings.objects.secret_access_key
        return S3ObjectStore(
            bucket,
            prefix=prefix,
            endpoint_url=settings.objects.endpoint_url or None,
            region=settings.objects.region or None,
            access_key_id=settings.objects.access_key_id or None,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
        )
    raise ValueError(f"unsupported object store URL scheme: {url.split(':', 1)[0]}")


class Lifecycle:
    """Start and stop what a server or worker process runs, in order."""

    def __init__(
        self, runtime: Runtime, contexts: Sequence[Context], *, leases: Leases | None = None
    ) -> None:
        self.runtime = runtime
        self.contexts = contexts
        self.leases = leases or Leases(
            sessions=runtime.write_sessions,
            # Who holds a lease is read where it is written: a lagging replica would delay the
            # next holder.
            read_sessions=runtime.write_sessions,
            clock=runtime.clock,
            holder=holder_id(),
            seconds=runtime.settings.lease_seconds,
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        # Services stop after the loops and relay: a loop stopping may still hand them work.
        self._services_stop = asyncio.Event()
        self._services: list[asyncio.Task[None]] = []

    async def start(self, *, migrate_first: bool, workers: bool) -> None:
        """Connect, migrate, run start hooks and, with `workers`, consumers, relay and loops."""
        runtime = self.runtime
        make_private_directory(runtime.settings.var_dir)
        if migrate_first:
            await migrate(runtime.database, [c.migrations for c in load_contexts() if c.migrations])
        await check_keys(runtime.database)
        await runtime.bus.connect()
        if runtime.rate_limiter is not None:
            await runtime.rate_limiter.connect()
        if runtime.settings.jwt_jwks_url:
            await runtime.refresh_token_keys()
        for context in self.contexts:
            for provide in context.provides:
                service = await inject(provide, runtime.dependencies())()
                runtime.services.provide(service)
                if isinstance(service, Runs):
                    task = asyncio.create_task(
                        service.run(self._services_stop), name=type(service).__name__
                    )
                    self._services.append(task)
        await asyncio.sleep(0)  # let them start, so the first request finds them running
        for context in self.contexts:
            for hook in context.on_start:
                await inject(hook, runtime.dependencies() | {"stop": self._stop})()
        if not workers:
            return
        # Taken after the start hooks, so loops and handlers may ask for what they started.
        dependencies = runtime.dependencies() | {"stop": self._stop}
        # Declared together: on RabbitMQ each consumer is a channel, queues and bindings, eight
        # round trips or so, and one after another they were most of a worker's start.
        await asyncio.gather(
            *(
                runtime.bus.consume(
                    Consumer(
                        name=f"{context.name}.{subscription.handler.__name__}",
                        subscription=subscription,
                        uow_factory=runtime.uow,
                        dependencies=dependencies,
                    )
                )
                for context in self.contexts
                for subscription in context.subscriptions
            )
        )
        for context in self.contexts:
            for loop in context.background:
                self._spawn(_supervised(loop, dependencies, self._stop), loop.__name__)
            for loop in context.singletons:
                self._lead(f"{context.name}.{loop.__name__}", loop, dependencies)
        self._spawn(runtime.relay.run(self._stop), "outbox-relay")

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        self._tasks.append(asyncio.create_task(coroutine, name=name))

    def _lead(self, name: str, loop: Hook, dependencies: dict[str, Any]) -> None:
        """Run `loop` whenever this process holds lease `name`, and say so on /metrics."""
        held = held_gauge(self.runtime.metrics.registry).labels(name)
        held.set(0)
        self._spawn(
            lead(
                name,
                functools.partial(_supervised, loop, dependencies, self._stop),
                leases=self.leases,
                timer=SystemTimer(),
                stop=self._stop,
                on_change=lambda leading: held.set(int(leading)),
            ),
            f"lead:{name}",
        )

    async def stop(self, *, grace_seconds: float = 30.0) -> None:
        """Let the relay finish its batch, stop the loops, then close bus, cache and database."""
        self._stop.set()
        # Cancelling a handler mid-transaction would leave its connection half-closed; the relay
        # notices the stop signal between batches, so give it the chance to get there.
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace_seconds)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._services_stop.set()
        if self._services:
            await asyncio.wait(self._services, timeout=grace_seconds)
        for task in self._services:
            task.cancel()
        await asyncio.gather(*self._services, return_exceptions=True)
        self._services.clear()
        await self.runtime.devices.close()
        await self.runtime.bus.close()
        await self.runtime.cache.close()
        if self.runtime.rate_limiter is not None:
            await self.runtime.rate_limiter.close()
        await self.runtime.database.dispose()


async def _supervised(loop: Hook, dependencies: dict[str, Any], stop: asyncio.Event) -> None:
    """Run a background loop until `stop`, restarting it after a failure."""
    while not stop.is_set():
        try:
            await inject(loop, dependencies)()
        except Exception as exc:  # noqa: BLE001  (a loop must outlive a passing fault)
            log.warning("background.failed", loop=loop.__name__, error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5)
