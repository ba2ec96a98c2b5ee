"""What the ingest context runs beside its routes: its use case and writer, partition upkeep."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from medcloud.config import Settings
from medcloud.ingest import partitions
from medcloud.ingest.intake import Intake
from medcloud.ingest.writer import ReadingWriter
from medcloud.platform.cache import Cache
from medcloud.platform.clock import Clock
from medcloud.platform.directory import DeviceDirectory
from medcloud.platform.metrics import Metrics
from medcloud.platform.uow import UnitOfWorkFactory

log = structlog.get_logger(__name__)


async def provide_intake(
    *,
    settings: Settings,
    uow_factory: UnitOfWorkFactory,
    metrics: Metrics,
    devices: DeviceDirectory,
    cache: Cache,
) -> Intake:
    """Build this process's ingest use case with its micro-batch writer, which the process's
    lifecycle runs, drains and stops.

    Provided with the routes rather than with the workers, so a server run without workers
    (`serve --no-workers`) batches its writes too.
    """
    # SQLite has one writer at a time: a second flusher would only wait for the lock.
    flushers = 1 if settings.is_sqlite else 2
    writer = ReadingWriter(
        uow_factory=uow_factory,
        metrics=metrics,
        batch_rows=settings.ingest.writer_batch_rows,
        batch_ms=settings.ingest.writer_batch_ms,
        max_pending_rows=settings.ingest.writer_max_pending_rows,
        flushers=flushers,
    )
    return Intake(settings, metrics, devices, cache, uow_factory, writer)


async def maintain_partitions(
    *, settings: Settings, uow_factory: UnitOfWorkFactory, clock: Clock, stop: asyncio.Event
) -> None:
    """Create monthly reading partitions ahead and drop expired ones, periodically (PostgreSQL)."""
    if settings.is_sqlite:
        await stop.wait()  # returning would have the supervisor start it again at once
        return
    while not stop.is_set():
        async with uow_factory() as uow:
            connection = await uow.session.connection()
            created, dropped = await partitions.maintain(
                connection,
                now=clock.now(),
                ahead_months=settings.ingest.partitions_ahead_months,
                retention_days=settings.ingest.retention_days,
            )
            await uow.commit()
        if created or dropped:
            log.info("ingest.partitions", created=created, dropped=dropped)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.ingest.partition_check_seconds)
