"""The outbox relay: publishes committed events, then marks them published.

Rows are claimed with a conditional update that sets a lease (Healthchecks' claim idiom), so any
number of relays can run side by side, none holds a transaction open while it publishes, and rows
claimed by a relay that died are taken over when the lease runs out. A crash between publish and
mark publishes an event twice; consumers recognise the second copy by its id.

A process whose relay runs writes its events already claimed for that relay, for a short lease
(`OWN_LEASE`), and hands them to it when they commit: the relay publishes them without claiming
them first, and no other relay is woken for them. If the process dies first, the lease runs out
and any relay takes them, as it takes a dead relay's claims.

A process that runs no relay (an API-only process) writes its events unclaimed, and its commits
send `NOTIFY outbox_message`; every relay listens on a connection of its own, so another
process's relay publishes them within milliseconds instead of at its next poll.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import Sequence

import structlog
from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from medcloud.platform.bus import Bus
from medcloud.platform.clock import Clock
from medcloud.platform.db import dialect_name
from medcloud.platform.events import Envelope
from medcloud.platform.metrics import Metrics
from medcloud.platform.models import OutboxMessage

log = structlog.get_logger(__name__)

PUBLISHED_RETENTION = dt.timedelta(days=1)
ASYNC_COMMIT = text("SET LOCAL synchronous_commit = off")
CHANNEL = "outbox_message"
"""The PostgreSQL notification channel a commit with events signals on."""
OWN_LEASE = dt.timedelta(seconds=5)
"""How long events committed in a process with a running relay are held for that relay. Its
relay publishes them within milliseconds; one lagging longer has them taken by any relay (a
second copy, which consumers recognise), and one that died has them taken after this."""


class OutboxRelay:
    """Move events from the outbox table onto the bus."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        bus: Bus,
        clock: Clock,
        metrics: Metrics,
        batch_size: int = 500,
        poll_seconds: float = 0.5,
        claim_seconds: float = 30.0,
        listen_dsn: str | None = None,
        pipeline: int = 1,
    ) -> None:
        """`pipeline` batches may be on the bus at once: more than one only where the bus keeps
        each consumer's batches in publish order (the in-process bus does)."""
        self._sessions = sessions
        self._pipeline = max(1, pipeline)
        self._listen_dsn = listen_dsn
        self._bus = bus
        self._clock = clock
        self._metrics = metrics
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._claim = dt.timedelta(seconds=claim_seconds)
        self._wake = asyncio.Event()
        self._look = True
        self._running = False
        self._own: dict[str, Envelope] = {}

    def wake(self) -> None:
        """Look for new rows now rather than at the next poll."""
        self._look = True
        self._wake.set()

    def own_lease(self) -> dt.timedelta | None:
        """How long events committed now in this process are to be held for this relay; None
        while it is not running, or while it holds two batches already (a bus that is down):
        then they wait in the table for any relay, woken by NOTIFY, so memory stays bounded."""
        if self._running and len(self._own) < 2 * self._batch_size:
            return OWN_LEASE
        return None

    def committed(self, envelopes: Sequence[Envelope], *, claimed: bool = False) -> None:
        """Take note of envelopes this process just committed to the outbox, and wake.

        Claimed ones (written under `own_lease`) are this relay's to publish as they are, their
        events already opened: that spares parsing and validating each event again (a batch's
        readings event carries hundreds of samples). Others are claimed from the table, as any
        process's are.
        """
        if claimed:
            for envelope in envelopes:
                self._own[envelope.id] = envelope
        else:
            self._look = True
        self._wake.set()

    def _envelopes(self, claimed: Sequence[tuple[int, str, str]]) -> list[Envelope]:
        envelopes = []
        for _, event_id, body in claimed:
            # One of ours whose lease ran out before it was published is published from here.
            held = self._own.pop(event_id, None)
            envelopes.append(Envelope.from_bytes(body) if held is None else held)
        return envelopes

    async def relay_once(self) -> int:
        """Claim, publish and mark one batch; return how many events were published."""
        claimed = await self._claim_batch(self._batch_size)
        if not claimed:
            return 0
        return await self._publish((), claimed)

    async def _publish(
        self, own: Sequence[Envelope], claimed: Sequence[tuple[int, str, str]] = ()
    ) -> int:
        """Publish and mark a batch of events held under this process's lease (`own`) and
        claimed ones (claims released if the bus fails); count it."""
        envelopes = [*own, *self._envelopes(claimed)]
        rows: list[ColumnElement[bool]] = []
        if own:
            rows.append(OutboxMessage.event_id.in_([envelope.id for envelope in own]))
        if claimed:
            rows.append(OutboxMessage.position.in_([position for position, _, _ in claimed]))
        try:
            await self._bus.publish(envelopes)
        except Exception:
            await self._release(or_(*rows))
            raise
        async with self._sessions() as session, session.begin():
            await _bookkeeping(session)
            await session.execute(
                update(OutboxMessage)
                .where(or_(*rows))
                .values(published_at=self._clock.now(), claimed_until=None)
                .execution_options(synchronize_session=False)
            )
        self._metrics.events_published.inc(len(envelopes))
        return len(envelopes)

    async def _claim_batch(self, size: int) -> Sequence[tuple[int, str, str]]:
        if size <= 0:
            return []
        now = self._clock.now()
        candidates = (
            select(OutboxMessage.position)
            .where(
                OutboxMessage.published_at.is_(None),
                (OutboxMessage.claimed_until.is_(None)) | (OutboxMessage.claimed_until < now),
            )
            .order_by(OutboxMessage.position)
            .limit(size)
        )
        async with self._sessions() as session, session.begin():
            if dialect_name(session) == "postgresql":
                await _bookkeeping(session)
                candidates = candidates.with_for_update(skip_locked=True)
            result = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.position.in_(candidates.scalar_subquery()))
                .values(claimed_until=now + self._claim)
                .returning(OutboxMessage.position, OutboxMessage.event_id, OutboxMessage.body)
                # No OutboxMessage is loaded in these sessions: nothing to keep in step.
                .execution_options(synchronize_session=False)
            )
            rows = sorted((position, event_id, body) for position, event_id, body in result.all())
        return rows

    async def _release(self, rows: ColumnElement[bool]) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(OutboxMessage)
                .where(rows)
                .values(claimed_until=None)
                .execution_options(synchronize_session=False)
            )

    async def pending(self) -> int:
        """Count events not yet published (the bus lag)."""
        async with self._sessions() as session:
            count = await session.scalar(
                select(func.count()).where(OutboxMessage.published_at.is_(None))
            )
        return int(count or 0)

    async def purge(self) -> None:
        """Delete rows published longer ago than the retention period."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                delete(OutboxMessage).where(
                    OutboxMessage.published_at < self._clock.now() - PUBLISHED_RETENTION
                )
            )

    async def listen(self, stop: asyncio.Event) -> None:
        """Wake on every commit with events in any process (PostgreSQL), until `stop`."""
        import asyncpg

        assert self._listen_dsn is not None  # noqa: S101  (only started with a DSN)
        while not stop.is_set():
            try:
                connection = await asyncpg.connect(self._listen_dsn)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("outbox.listen_failed", error=type(exc).__name__)
                await _wait_any(stop, timeout=5.0)
                continue
            lost = asyncio.Event()
            try:
                await connection.add_listener(CHANNEL, lambda *_: self.wake())
                connection.add_termination_listener(lambda *_, ended=lost: ended.set())
                # Rows committed while no listener ran are found by the first claim.
                self.wake()
                await _wait_any(stop, lost, timeout=None)
            finally:
                if not connection.is_closed():
                    await connection.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set, backing off while the bus or database is unavailable."""
        listener = None
        if self._listen_dsn is not None:
            listener = asyncio.create_task(self.listen(stop), name="outbox-listen")
        try:
            await self._relay(stop)
        finally:
            if listener is not None:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)

    async def _relay(self, stop: asyncio.Event) -> None:
        failures = 0
        cycles = 0
        in_flight: set[asyncio.Task[int]] = set()
        self._running = True
        try:
            while not stop.is_set():
                self._wake.clear()
                look, self._look = self._look, False
                try:
                    await self._relay_backlog(in_flight, stop, look=look)
                    cycles += 1
                    if cycles % 120 == 1:
                        self._metrics.outbox_pending.set(await self.pending())
                        await self.purge()
                    failures = 0
                except Exception as exc:  # noqa: BLE001  (keep relaying once the fault clears)
                    failures += 1
                    log.warning("outbox.relay_failed", error=type(exc).__name__, failures=failures)
                    # Whatever failed is found again in the table: ours are released or lapse.
                    self._look = True
                    await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))
                    continue
                await _wait_any(self._wake, stop, timeout=self._poll_seconds)
                if not self._wake.is_set():  # the poll: rows other processes committed
                    self._look = True
        finally:
            self._running = False
            # What is on the bus is applied and marked before the relay stops; a batch cut
            # short keeps its claim and is published again once the claim runs out.
            await asyncio.gather(*in_flight, return_exceptions=True)
            await self._hand_back()

    async def _hand_back(self) -> None:
        """Release what this process committed under its lease and did not publish, for the
        next relay to take at once rather than when the lease runs out."""
        if not self._own:
            return
        event_ids, self._own = list(self._own), {}
        try:
            await self._release(OutboxMessage.event_id.in_(event_ids))
        except Exception as exc:  # noqa: BLE001  (stopping: the lease runs out instead)
            log.warning("outbox.hand_back_failed", error=type(exc).__name__)

    async def _free_slot(self, in_flight: set[asyncio.Task[int]]) -> None:
        """Wait until fewer than `pipeline` batches are on the bus; raise what a finished
        batch raised."""
        while len(in_flight) >= self._pipeline or any(t.done() for t in in_flight):
            done, _ = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            in_flight.difference_update(done)
            # Every finished batch's outcome is read; the first failure stands for them all.
            failed = [
                error
                for task in done
                if not task.cancelled() and (error := task.exception()) is not None
            ]
            if failed:
                raise failed[0]

    async def _relay_backlog(
        self, in_flight: set[asyncio.Task[int]], stop: asyncio.Event, *, look: bool
    ) -> None:
        """Publish batches of what this process committed under its lease and, if `look`,
        of what it claims, until neither has a full batch left, with up to `pipeline` of them
        on the bus at once; raise what a finished batch raised."""
        while not stop.is_set():
            await self._free_slot(in_flight)
            ids = list(itertools.islice(self._own, self._batch_size))
            own = [self._own.pop(event_id) for event_id in ids]
            claimed = await self._claim_batch(self._batch_size - len(own)) if look else []
            if not own and not claimed:
                return
            in_flight.add(asyncio.create_task(self._publish(own, claimed), name="outbox-publish"))
            look = look and len(own) + len(claimed) == self._batch_size
            if not look and not self._own:
                return


async def _bookkeeping(session: AsyncSession) -> None:
    """Commit this transaction without waiting for its WAL to reach disk (PostgreSQL).

    Claims and marks are bookkeeping: one lost in a crash only means the event is published
    again, which consumers recognise. Not waiting for the flush takes a disk sync out of every
    relay cycle, and so out of every event's way to the bus.
    """
    if dialect_name(session) == "postgresql":
        await session.execute(ASYNC_COMMIT)


async def _wait_any(*events: asyncio.Event, timeout: float | None) -> None:
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
