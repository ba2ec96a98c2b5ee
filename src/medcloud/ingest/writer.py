"""The micro-batch writer: many requests' readings committed in one transaction.

Each request hands its rows over and waits; the writer commits whatever is waiting once
`batch_rows` rows are queued, once no new rows have arrived for `batch_ms`, or once a waiting
job is due (`batch_ms` after it came, unless its sender allows longer), publishes one
`device.data.collected` event per device and patient in that same transaction, and only then
resolves each request's future — so a 201 still means "committed". When more than
`max_pending_rows` wait, new work is refused at once (the transport answers 503 + Retry-After)
instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from medcloud.ingest import repository, rollups
from medcloud.ingest.events import ReadingsCollected, Sample
from medcloud.ingest.repository import Row
from medcloud.platform.clock import SystemTimer, Timer
from medcloud.platform.metrics import Metrics
from medcloud.platform.uow import UnitOfWorkFactory

log = structlog.get_logger(__name__)


class Backlogged(Exception):
    """The writer holds as many rows as it may; try again shortly."""


@dataclass
class Job:
    """One request's rows, and the future its sender awaits."""

    organisation_id: str
    device_id: str
    received_at: dt.datetime
    rows: list[Row]
    future: asyncio.Future[list[Row]] = field(repr=False)
    due: float = 0.0
    """When (the writer's timer) the job should be committed at the latest, rows arriving or not."""


async def store(uow_factory: UnitOfWorkFactory, jobs: Sequence[Job]) -> list[list[Row]]:
    """Insert the jobs' rows and publish their events in one transaction; return each job's new
    rows (a reading sent twice in the batch counts for the first job that sent it)."""
    async with uow_factory() as uow:
        rows = [row for job in jobs for row in job.rows]
        stored = await repository.insert_new(uow.session, rows)
        await rollups.add_to_rollups(uow.session, stored)
        new = {row.key for row in stored}
        per_job: list[list[Row]] = []
        # One event per device and patient for the whole batch, however many requests or
        # messages brought its rows: a monitor sending each second over MQTT would otherwise
        # cost an event, and its consumers' work, per message. Late readings may belong to an
        # earlier patient, whose alerts must be raised on their own data.
        events: dict[tuple[str, str | None], tuple[Job, list[Row]]] = {}
        for job in jobs:
            mine: list[Row] = []
            for row in job.rows:
                key = row.key
                if key in new:
                    new.discard(key)
                    mine.append(row)
                    events.setdefault((job.device_id, row.patient_id), (job, []))[1].append(row)
            per_job.append(mine)
        for (_device, patient_id), (job, stored_rows) in events.items():
            uow.publish(collected(job, stored_rows, patient_id=patient_id))
        await uow.commit()
    return per_job


def collected(job: Job, stored: Sequence[Row], *, patient_id: str | None) -> ReadingsCollected:
    """Describe newly stored readings of one job and patient as one event, newest sample as
    `data`."""
    by_time: dict[dt.datetime, dict[str, float]] = {}
    for row in stored:
        by_time.setdefault(row.timestamp, {})[row.type] = row.value
    samples = tuple(
        Sample.model_construct(timestamp=t, measurements=m) for t, m in sorted(by_time.items())
    )
    # Built from rows the gate passed, so not validated again: a batch's event carries hundreds
    # of samples.
    return ReadingsCollected.model_construct(
        organisation_id=job.organisation_id,
        device_id=job.device_id,
        patient_id=patient_id,
        received_at=job.received_at,
        timestamp=samples[-1].timestamp,
        data=samples[-1].measurements,
        samples=samples,
    )


class ReadingWriter:
    """Queue jobs, commit them in micro-batches, resolve each job after its batch commits."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        metrics: Metrics,
        batch_rows: int,
        batch_ms: float,
        max_pending_rows: int,
        flushers: int = 1,
        timer: Timer | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        self._timer = timer or SystemTimer()
        self._metrics = metrics
        self._batch_rows = batch_rows
        self._linger = batch_ms / 1000
        self._queued_rows = 0
        self._arrivals = 0
        self._due = math.inf
        self._max_pending = max_pending_rows
        self._flushers = max(1, flushers)
        self._queue: deque[Job] = deque()
        self._pending_rows = 0
        self._wake = asyncio.Event()
        self._running = False

    @property
    def running(self) -> bool:
        """Tell whether the writer is accepting work."""
        return self._running

    @property
    def pending_rows(self) -> int:
        """Rows queued or being written."""
        return self._pending_rows

    async def submit(
        self,
        rows: list[Row],
        *,
        organisation_id: str,
        device_id: str,
        received_at: dt.datetime,
        wait_ms: float | None = None,
    ) -> list[Row]:
        """Queue rows and wait until they are committed; return those that were new.

        `wait_ms` is how long these rows may wait for others to share their batch while rows
        keep arriving (default `batch_ms`): a sender that is not waiting on the answer to send
        its next rows, such as an MQTT device with messages in flight, can allow more.
        """
        if not self._running:
            raise Backlogged("the writer is not running")
        # An empty writer takes any request, however large, so no batch is refused forever.
        if self._pending_rows and self._pending_rows + len(rows) > self._max_pending:
            raise Backlogged(f"{self._pending_rows} rows are waiting to be written")
        future: asyncio.Future[list[Row]] = asyncio.get_running_loop().create_future()
        patience = self._linger if wait_ms is None else max(wait_ms / 1000, self._linger)
        due = self._timer.monotonic() + patience
        self._queue.append(Job(organisation_id, device_id, received_at, rows, future, due))
        self._due = min(self._due, due)
        self._queued_rows += len(rows)
        self._arrivals += 1
        self._pending_rows += len(rows)
        self._metrics.ingest_writer_pending.set(self._pending_rows)
        self._wake.set()
        return await future

    async def run(self, stop: asyncio.Event) -> None:
        """Write until `stop` is set and nothing is left; then refuse what still arrives."""
        self._running = True
        watcher = asyncio.create_task(self._wake_on(stop))
        try:
            await asyncio.gather(*(self._flush_loop(stop) for _ in range(self._flushers)))
        finally:
            self._running = False
            watcher.cancel()
            while self._queue:
                job = self._queue.popleft()
                if not job.future.done():
                    job.future.set_exception(Backlogged("the writer stopped"))
            self._queued_rows = 0

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        while True:
            if not self._queue:
                if stop.is_set():
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._queued_rows < self._batch_rows and self._linger > 0 and not stop.is_set():
                await self._gather(stop)
            jobs, rows = [], 0
            while self._queue and rows < self._batch_rows:
                job = self._queue.popleft()
                jobs.append(job)
                rows += len(job.rows)
            self._queued_rows -= rows
            self._due = min((job.due for job in self._queue), default=math.inf)
            if self._queue:
                self._wake.set()  # another flusher may take the rest
            await self._flush(jobs, rows)

    async def _gather(self, stop: asyncio.Event) -> None:
        """Let more rows join the batch: until none arrive for `batch_ms`, the batch is full,
        or a waiting job is due.

        A lull ends the wait at once, and HTTP requests, whose senders wait for the answer, are
        due `batch_ms` after they come. Rows of a steady MQTT stream may wait longer: they
        fill bigger batches, and what each batch costs whatever its size — a transaction, its
        events, the relay's and each consumer's transaction — is paid less often, when the
        process is busiest.
        """
        while True:
            arrivals = self._arrivals
            timer = self._timer
            await timer.sleep(max(0.0, min(self._linger, self._due - timer.monotonic())))
            if (
                self._arrivals == arrivals
                or self._queued_rows >= self._batch_rows
                or timer.monotonic() >= self._due
                or stop.is_set()
            ):
                return

    async def _flush(self, jobs: list[Job], rows: int) -> None:
        started = time.perf_counter()
        try:
            results = await store(self._uow_factory, jobs)
        except Exception as exc:  # noqa: BLE001  (each job's sender learns of the failure)
            if len(jobs) > 1:
                # One bad job must not fail its neighbours: write each alone.
                log.warning("ingest.batch.failed", jobs=len(jobs), error=type(exc).__name__)
                for job in jobs:
                    await self._flush([job], len(job.rows))
                return
            self._settle(jobs, rows, error=exc)
            return
        self._metrics.ingest_flush_seconds.observe(time.perf_counter() - started)
        for job, stored in zip(jobs, results, strict=True):
            if not job.future.done():
                job.future.set_result(stored)
        self._settle(jobs, rows)

    def _settle(self, jobs: list[Job], rows: int, *, error: Exception | None = None) -> None:
        self._pending_rows -= rows
        self._metrics.ingest_writer_pending.set(self._pending_rows)
        if error is not None:
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
