"""The in-process bus with several batches in flight: each consumer applies them in publish
order, and a quick consumer is not held up by a slow one's backlog."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

from medcloud.platform.bus import Consumer, InProcessBus
from medcloud.platform.events import Envelope
from tests.support.waiting import until_true
from tests.unit.platform.test_relay_handover import envelope


class Recorder:
    """A consumer that notes what it applied, and may be held before applying."""

    def __init__(self, name: str, *, hold: asyncio.Event | None = None) -> None:
        self.name = name
        self.routing_keys = ("device.data.collected",)
        self.batched = True
        self.applied: list[str] = []
        self._hold = hold

    async def handle_many(self, envelopes: Sequence[Envelope]) -> None:
        if self._hold is not None:
            await self._hold.wait()
        self.applied += [e.id for e in envelopes]

    async def handle(self, envelope: Envelope) -> None:
        await self.handle_many([envelope])


def batch(size: int) -> list[Envelope]:
    return [envelope(f"dev-{n}") for n in range(size)]


async def test_a_quick_consumer_takes_later_batches_while_a_slow_one_holds_the_first() -> None:
    bus = InProcessBus()
    hold = asyncio.Event()
    slow, quick = Recorder("slow", hold=hold), Recorder("quick")
    for consumer in (slow, quick):
        await bus.consume(cast(Consumer, cast(Any, consumer)))
    first, second, third = batch(3), batch(2), batch(4)
    publishes = [asyncio.create_task(bus.publish(b)) for b in (first, second, third)]
    everything = [e.id for e in first + second + third]
    await until_true(
        lambda: quick.applied == everything, what="the quick consumer to apply all three", timeout=5
    )
    assert slow.applied == []
    assert not any(p.done() for p in publishes), "a batch counts as published once all applied it"
    hold.set()
    await asyncio.gather(*publishes)
    assert slow.applied == [e.id for e in first + second + third]


async def test_each_consumer_applies_batches_in_publish_order_whatever_their_pace() -> None:
    bus = InProcessBus()
    holds = [asyncio.Event() for _ in range(3)]
    order: list[int] = []

    class Paced(Recorder):
        async def handle_many(self, envelopes: Sequence[Envelope]) -> None:
            index = batches.index(list(envelopes))
            await holds[index].wait()
            order.append(index)

    # The marker is handed each batch right after the paced consumer, in the same `publish`:
    # once it has applied all three, the paced one has been offered each of them too.
    consumer, marker = Paced("paced"), Recorder("marker")
    for each in (consumer, marker):
        await bus.consume(cast(Consumer, cast(Any, each)))
    batches = [batch(2), batch(3), batch(2)]
    publishes = [asyncio.create_task(bus.publish(b)) for b in batches]
    # The last batch is ready first, then the middle one: neither may go before the first.
    holds[2].set()
    holds[1].set()
    everything = [e.id for b in batches for e in b]
    await until_true(
        lambda: marker.applied == everything, what="the marker to apply all three", timeout=5
    )
    assert order == []
    holds[0].set()
    await asyncio.gather(*publishes)
    assert order == [0, 1, 2]
