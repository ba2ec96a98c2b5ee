"""The outbox and consumers: nothing committed is lost, nothing delivered twice takes effect twice,
and a poison event is dead-lettered with its reason while the rest keeps flowing."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from medcloud.bootstrap import Lifecycle, bootstrap, create_bus
from medcloud.config import Settings
from medcloud.platform.bus import Bus, Consumer, Subscription
from medcloud.platform.events import Envelope, Event
from medcloud.platform.models import DeadLetter, OutboxMessage
from medcloud.platform.outbox import OWN_LEASE
from medcloud.platform.runtime import Runtime
from medcloud.platform.uow import UnitOfWork
from tests.support.client import eventually
from tests.support.waiting import until_true


class Pinged(Event):
    routing_key = "test.pinged"

    n: int


@dataclass
class UnreliableBus:
    """Wraps a real bus; can refuse to publish, or publish and then fail (a crash before mark)."""

    inner: Bus
    down: bool = False
    fail_after_publish: int = 0
    published: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None
    """When set, publishing waits for it to open."""

    async def connect(self) -> None:
        await self.inner.connect()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self.inner.ping()

    async def consume(self, consumer: Consumer) -> None:
        await self.inner.consume(consumer)

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        if self.down:
            raise ConnectionError("bus unreachable")
        if self.gate is not None:
            await self.gate.wait()
        await self.inner.publish(envelopes)
        self.published += [e.id for e in envelopes]
        if self.fail_after_publish:
            self.fail_after_publish -= 1
            raise ConnectionError("lost the connection before marking")


class SeeingConsumer(Consumer):
    """A consumer that notes each delivery it is done with, whether it applied the event or
    recognised it as applied before (which leaves no trace of its own)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen: list[str] = []

    async def handle_many(self, envelopes: Sequence[Envelope]) -> None:
        await super().handle_many(envelopes)
        self.seen += [envelope.id for envelope in envelopes]


@dataclass
class Setup:
    runtime: Runtime
    bus: UnreliableBus
    calls: list[int]
    consumer: SeeingConsumer


@pytest.fixture
async def setup(settings: Settings) -> AsyncIterator[Setup]:
    bus = UnreliableBus(create_bus(settings))
    runtime = bootstrap(settings, bus=bus)
    lifecycle = Lifecycle(runtime, [])
    await lifecycle.start(migrate_first=True, workers=False)
    calls: list[int] = []

    async def count_pings(event: Pinged, *, uow: UnitOfWork) -> None:
        if event.n < 0:
            raise ValueError("negative pings are poison")

        # The effect counts only once its transaction commits, like a handler's database
        # writes: a batch rolled back and applied again one by one must not count twice.
        def applied(_session: object) -> None:
            calls.append(event.n)

        sa_event.listen(uow.session.sync_session, "after_commit", applied, once=True)

    consumer = SeeingConsumer(
        name="test.count_pings",
        subscription=Subscription(Pinged, count_pings),
        uow_factory=runtime.uow,
        dependencies={},
    )
    await bus.consume(consumer)
    try:
        yield Setup(runtime, bus, calls, consumer)
    finally:
        await lifecycle.stop()


async def ping(runtime: Runtime, *numbers: int) -> None:
    async with runtime.uow() as uow:
        for n in numbers:
            uow.publish(Pinged(organisation_id="org-1", n=n))
        await uow.commit()


async def pending(runtime: Runtime) -> int:
    return await runtime.relay.pending()


async def test_events_roll_back_with_their_transaction(setup: Setup) -> None:
    async with setup.runtime.uow() as uow:
        uow.publish(Pinged(organisation_id="org-1", n=1))
    assert await pending(setup.runtime) == 0


async def test_events_wait_in_the_outbox_while_the_bus_is_down(setup: Setup) -> None:
    await ping(setup.runtime, 1, 2, 3)
    setup.bus.down = True
    with pytest.raises(ConnectionError):
        await setup.runtime.relay.relay_once()
    assert await pending(setup.runtime) == 3
    assert setup.calls == []

    setup.bus.down = False
    assert await setup.runtime.relay.relay_once() == 3
    assert await eventually(lambda: _sorted(setup.calls, 3)) == [1, 2, 3]
    assert await pending(setup.runtime) == 0


async def test_an_event_published_twice_takes_effect_once(setup: Setup) -> None:
    await ping(setup.runtime, 7)
    setup.bus.fail_after_publish = 1
    with pytest.raises(ConnectionError):
        await setup.runtime.relay.relay_once()
    assert await pending(setup.runtime) == 1  # not marked: it will be published again
    assert await setup.runtime.relay.relay_once() == 1
    assert len(setup.bus.published) == 2 and len(set(setup.bus.published)) == 1
    await eventually(lambda: _sorted(setup.calls, 1))
    await _settle(setup)
    assert setup.calls == [7]


async def test_a_poison_event_is_dead_lettered_and_the_rest_flows(setup: Setup) -> None:
    await ping(setup.runtime, 1, -1, 2)
    assert await setup.runtime.relay.relay_once() == 3
    assert await eventually(lambda: _sorted(setup.calls, 2)) == [1, 2]

    async def dead_letters() -> list[DeadLetter]:
        async with setup.runtime.read_sessions() as session:
            return list((await session.scalars(select(DeadLetter))).all())

    letters = await eventually(dead_letters)
    assert len(letters) == 1
    assert letters[0].consumer == "test.count_pings"
    assert "negative pings are poison" in letters[0].reason
    assert letters[0].attempts == setup.runtime.settings.bus.max_attempts
    assert Envelope.from_bytes(letters[0].body).payload == {"n": -1}


async def test_relays_side_by_side_publish_each_event_once(setup: Setup) -> None:
    await ping(setup.runtime, *range(40))
    other = bootstrap(setup.runtime.settings, bus=setup.bus)
    try:
        counts = list(
            await asyncio.gather(setup.runtime.relay.relay_once(), other.relay.relay_once())
        )
        while await pending(setup.runtime):
            counts.append(await setup.runtime.relay.relay_once())
    finally:
        await other.database.dispose()
    assert sum(counts) == 40
    assert len(setup.bus.published) == 40
    async with setup.runtime.read_sessions() as session:
        published = await session.scalar(
            select(func.count()).where(OutboxMessage.published_at.is_not(None))
        )
    assert published == 40


async def _running(runtime: Runtime, stop: asyncio.Event) -> asyncio.Task[None]:
    relay = asyncio.create_task(runtime.relay.run(stop))
    await until_true(lambda: runtime.relay._running, what="the relay to run")
    return relay


async def test_what_a_process_commits_is_held_for_its_running_relay_and_no_other(
    setup: Setup,
) -> None:
    setup.bus.gate = asyncio.Event()
    stop = asyncio.Event()
    relay = await _running(setup.runtime, stop)
    other = bootstrap(setup.runtime.settings, bus=setup.bus)
    try:
        await ping(setup.runtime, 1, 2, 3)
        await until_true(lambda: not setup.runtime.relay._own, what="the relay to take them")
        # On their way to the bus, written under the process's lease rather than claimed by a
        # statement of its relay's, and no other relay may take them meanwhile.
        async with setup.runtime.read_sessions() as session:
            rows = (await session.execute(select(OutboxMessage))).scalars().all()
        assert len(rows) == 3
        for row in rows:
            assert row.claimed_until is not None
            assert row.claimed_until - row.created_at == OWN_LEASE
        assert await other.relay.relay_once() == 0
        setup.bus.gate.set()
        await until_true(lambda: len(setup.bus.published) == 3, what="the events on the bus")
        await until_true(lambda: sorted(setup.calls) == [1, 2, 3], what="the events applied")
    finally:
        setup.bus.gate.set()
        stop.set()
        await relay
        await other.database.dispose()
    assert await pending(setup.runtime) == 0
    assert len(setup.bus.published) == 3


async def test_a_stopping_relay_hands_back_what_it_held_for_any_relay_to_take_at_once(
    setup: Setup,
) -> None:
    stop = asyncio.Event()
    relay = await _running(setup.runtime, stop)
    other = bootstrap(setup.runtime.settings, bus=setup.bus)
    try:
        async with setup.runtime.uow() as uow:
            uow.publish(Pinged(organisation_id="org-1", n=7))
            await uow.commit()
            stop.set()  # before the relay runs again: it stops holding the event
        await relay
        assert await other.relay.relay_once() == 1
    finally:
        await other.database.dispose()
    assert setup.bus.published and await pending(setup.runtime) == 0


async def _sorted(calls: list[int], at_least: int) -> list[int] | None:
    return sorted(calls) if len(calls) >= at_least else None


async def _settle(setup: Setup) -> None:
    """Wait until the consumer is done with every copy of every event published."""
    await until_true(
        lambda: Counter(setup.consumer.seen) >= Counter(setup.bus.published),
        what="the consumer to finish with every delivery",
    )


async def test_a_batched_handler_takes_what_arrives_together_in_one_call_and_each_event_once(
    setup: Setup,
) -> None:
    batches: list[list[int]] = []

    async def count_batch(events: Sequence[Pinged], *, uow: UnitOfWork) -> None:
        batches.append([event.n for event in events])

    consumer = Consumer(
        name="test.count_batch",
        subscription=Subscription(Pinged, count_batch, batched=True),
        uow_factory=setup.runtime.uow,
        dependencies={},
    )
    now = setup.runtime.clock.now()
    one, two, three, four = (
        Envelope.wrap(Pinged(organisation_id="org-1", n=n), occurred_at=now) for n in (1, 2, 3, 4)
    )
    await consumer.handle_many([one, two, three])
    # A redelivery mixed with a new event, and the same envelope twice in one batch.
    await consumer.handle_many([two, four, four])
    await consumer.handle(one)
    assert batches == [[1, 2, 3], [4]]
