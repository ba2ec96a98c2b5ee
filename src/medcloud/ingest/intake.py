"""The one ingest use case: every transport hands over a decoded batch and who sent it.

HTTP (`api.py`), MQTT (`mqtt_messages.py`), file uploads (`uploads.py`) and any transport to
come read their own format and answer in their own way. What happens in between happens here,
once: authorise the sender for the device, refuse what could not be read or fails the
data-quality gate (kept in quarantine with its reasons, counted, then raised as `Invalid` or as
the error the transport decoded), write the rest all or nothing, and answer with what was
stored. A repeated idempotency key replays its first answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NoReturn

import orjson

from medcloud.config import Settings
from medcloud.ingest.decode import Decoded, Problem
from medcloud.ingest.partitions import Partitions, partitions_for
from medcloud.ingest.schemas import IngestResult, ReadingIn
from medcloud.ingest.series import SeriesIds
from medcloud.ingest.service import (
    device_principal,
    gate,
    keep_refused,
    patients_before_change,
    series_needed,
    to_rows,
)
from medcloud.ingest.writer import Backlogged, Job, ReadingWriter, store
from medcloud.platform.cache import Cache
from medcloud.platform.directory import DeviceDirectory, DeviceRef, Measured
from medcloud.platform.errors import DomainError, FieldError, Invalid, Unavailable
from medcloud.platform.memo import Memo
from medcloud.platform.metrics import Metrics
from medcloud.platform.policy import authorize_device_write
from medcloud.platform.security import DevicePrincipal, Principal
from medcloud.platform.uow import UnitOfWorkFactory

RETRY_AFTER_SECONDS = 1


class Transport(StrEnum):
    """How readings arrived; names the metrics' `transport` label and quarantine rows."""

    HTTP = "http"
    MQTT = "mqtt"
    UPLOAD = "upload"
    MLLP = "mllp"


@dataclass(frozen=True)
class Replay:
    """An idempotency key (already scoped to what it may repeat) and the digest of the input
    it was first used with: the same key with the same input answers as the first time."""

    key: str
    digest: str


@dataclass
class Intake:
    """Authorise, gate and store a device's readings, whichever transport brought them.

    Built once per process by the ingest context, which also runs its micro-batch `writer`
    (`ingest/hooks.py`): readings share the writer's transactions with other senders' while
    it runs, and are committed on their own otherwise.
    """

    settings: Settings
    metrics: Metrics
    devices: DeviceDirectory
    cache: Cache
    uow_factory: UnitOfWorkFactory
    writer: ReadingWriter | None = None
    _senders: Memo[str, DeviceRef | None] = field(init=False, repr=False)
    _partitions: Partitions = field(init=False, repr=False)
    _series: SeriesIds = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._senders = Memo(self.settings.mqtt.device_cache_seconds)
        self._partitions = partitions_for(self.settings, self.uow_factory)
        self._series = SeriesIds(self.uow_factory)

    async def sender(self, device_id: str) -> tuple[DevicePrincipal | None, bool]:
        """Name the device a transport vouches for by id (the broker authenticated it); None
        when it is unknown or out of service. Also tell whether this call looked it up rather
        than finding it remembered (for `mqtt.device_cache_seconds`), so a flood from an
        unknown device can be logged once per look-up, not per message."""
        device, looked_up = await self._senders.get(device_id, lambda: self.devices.get(device_id))
        if device is None or device.decommissioned:
            return None, looked_up
        return device_principal(device), looked_up

    async def receive(
        self,
        principal: Principal,
        device_id: str,
        decoded: Decoded,
        *,
        transport: Transport,
        replay: Replay | None = None,
        alone: bool = False,
    ) -> IngestResult:
        """Store the batch all or nothing once committed, or refuse it whole.

        `alone` commits it in a transaction of its own (a file is a batch already, and "stored
        whole" should not depend on other senders'). Raises `decoded.error` when nothing could
        be read, `Invalid` when anything was refused, `Unavailable` when the store is
        backlogged.
        """
        device = authorize_device_write(principal, device_id)
        if replay is not None:
            seen = await self.cache.get(replay.key)
            if seen is not None:
                return _replayed(seen, replay)
        if decoded.problems:
            problems = decoded.problems
            await self.refuse(
                device, problems, transport=transport, total=len(problems), error=decoded.error
            )
        result = await self._store(device, decoded, transport=transport, alone=alone)
        if replay is not None:
            record = {"digest": replay.digest, "result": result.model_dump()}
            await self.cache.set(
                replay.key,
                orjson.dumps(record),
                ttl_seconds=self.settings.ingest.idempotency_ttl_seconds,
            )
        return result

    async def vouched(
        self, device: DeviceRef, readings: Sequence[Measured], *, transport: str
    ) -> int:
        """Store, all or nothing, readings a transport vouches `device` took (an HL7 interface
        that named it); return how many measurements were new."""
        decoded = Decoded(
            [ReadingIn(timestamp=r.at, measurements=dict(r.values)) for r in readings],
            batch=True,
            problems=[],
        )
        result = await self.receive(
            device_principal(device), device.id, decoded, transport=Transport(transport)
        )
        return result.stored

    async def _store(
        self, device: DevicePrincipal, decoded: Decoded, *, transport: Transport, alone: bool
    ) -> IngestResult:
        settings, metrics = self.settings, self.metrics
        readings = decoded.readings
        uow = self.uow_factory()
        now = uow.clock.now()
        problems = gate(readings, now=now, settings=settings, batch=decoded.batch)
        if problems:
            await self.refuse(device, problems, transport=transport, total=len(readings))
        earlier = await patients_before_change(self.devices, device, readings)
        series = await self._series.of_device(
            device.organisation_id, device.device_id, series_needed(readings, device, earlier)
        )
        rows = to_rows(
            readings, device, now=now, settings=settings, series=series, earlier_patients=earlier
        )
        await self._partitions.ensure(rows)
        writer = None if alone or self.writer is None or not self.writer.running else self.writer
        if writer is None:
            job = Job(
                device.organisation_id,
                device.device_id,
                now,
                rows,
                asyncio.get_running_loop().create_future(),
            )
            stored = (await store(lambda: uow, [job]))[0]
        else:
            try:
                stored = await writer.submit(
                    rows,
                    organisation_id=device.organisation_id,
                    device_id=device.device_id,
                    received_at=now,
                    # A device with more messages in flight is not waiting on this answer to
                    # send its next: its readings may wait longer to share a batch.
                    wait_ms=self._patience(transport),
                )
            except Backlogged as exc:
                metrics.readings_rejected.labels(transport, "backpressure").inc(len(rows))
                raise Unavailable(
                    "the readings store is catching up; send again shortly",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                ) from exc
        self._partitions.written(stored)
        metrics.readings_ingested.labels(transport).inc(len(stored))
        drifted = sum(1 for row in rows if row.clock_drift)
        if drifted:
            metrics.readings_clock_drift.labels(transport).inc(drifted)
        return IngestResult(
            device_id=device.device_id,
            accepted=len(rows),
            stored=len(stored),
            duplicates=len(rows) - len(stored),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run the writer until `stop`, then commit what it holds (the lifecycle calls this)."""
        if self.writer is not None:
            await self.writer.run(stop)

    def _patience(self, transport: Transport) -> float | None:
        if transport is Transport.MQTT:
            return self.settings.ingest.writer_stream_batch_ms
        return None

    async def refuse(
        self,
        device: DevicePrincipal,
        problems: Sequence[Problem],
        *,
        transport: Transport,
        total: int,
        error: DomainError | None = None,
    ) -> NoReturn:
        """Keep the refused readings in quarantine, count them, and refuse the whole input
        (with `error` when given: what a transport says of input it could not read at all)."""
        await keep_refused(
            self.uow_factory(), device, problems, transport=transport, settings=self.settings
        )
        for problem in problems:
            self.metrics.readings_rejected.labels(transport, problem.reason).inc()
        if error is not None:
            raise error
        errors = [problem.error for problem in problems]
        raise Invalid(
            f"{len(errors)} problem(s) in the readings; none of the {total} were stored",
            errors=errors,
        )


def _replayed(seen: bytes, replay: Replay) -> IngestResult:
    record = orjson.loads(seen)
    if record["digest"] != replay.digest:
        raise Invalid(
            "this Idempotency-Key was used with another body",
            errors=[FieldError("header.idempotency-key", "already used with another body")],
        )
    return IngestResult.model_validate(record["result"])
