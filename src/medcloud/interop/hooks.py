"""What the interoperability context runs beside its routes: the MLLP listener, and the
forgetting of old control ids."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.config import Settings
from medcloud.interop import service
from medcloud.interop.mllp import MllpServer, tls_context
from medcloud.interop.receiver import Receiver
from medcloud.platform.clock import Clock
from medcloud.platform.directory import EquipmentRegistry, PatientRegistry, ReadingIntake
from medcloud.platform.metrics import Metrics
from medcloud.platform.uow import UnitOfWorkFactory

log = structlog.get_logger(__name__)

FORGET_EVERY_SECONDS = 3600.0


async def listen_mllp(
    *,
    settings: Settings,
    uow_factory: UnitOfWorkFactory,
    read_sessions: async_sessionmaker[AsyncSession],
    metrics: Metrics,
    clock: Clock,
    equipment: EquipmentRegistry,
    patient_registry: PatientRegistry,
    stop: asyncio.Event,
    intake: ReadingIntake | None = None,
) -> None:
    """Take HL7 v2 over MLLP on `mllp.port` until `stop` (nothing listens without one)."""
    mllp = settings.mllp
    if mllp.port is None:
        await stop.wait()  # returning would have the supervisor start it again at once
        return
    if intake is None:
        # Readings are stored by the ingest context's use case, run in this same process.
        log.error("hl7.mllp.no_intake", hint="run the interop context beside ingest")
        await stop.wait()
        return
    receiver = Receiver(
        uow_factory=uow_factory,
        read_sessions=read_sessions,
        intake=intake,
        equipment=equipment,
        patients=patient_registry,
        metrics=metrics,
        clock=clock,
    )
    server = MllpServer(
        receiver.converse,
        max_message_bytes=mllp.max_message_bytes,
        read_timeout_seconds=mllp.read_timeout_seconds,
        idle_timeout_seconds=mllp.idle_timeout_seconds,
        max_connections=mllp.max_connections,
        tls=tls_context(mllp.tls_certificate, mllp.tls_key),
    )
    await server.start(mllp.host, mllp.port)
    log.info("hl7.mllp.listening", host=mllp.host, port=server.port, tls=bool(mllp.tls_certificate))
    try:
        await stop.wait()
    finally:
        await server.close()
        await receiver.answers.close()


async def forget_answered(
    *, settings: Settings, uow_factory: UnitOfWorkFactory, clock: Clock, stop: asyncio.Event
) -> None:
    """Forget, hourly, the control ids of messages answered longer ago than settings keep."""
    while not stop.is_set():
        forgotten = await service.forget_processed(
            uow_factory=uow_factory, now=clock.now(), keep_days=settings.mllp.processed_ttl_days
        )
        if forgotten:
            log.info("hl7.processed.forgotten", count=forgotten)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), FORGET_EVERY_SECONDS)
