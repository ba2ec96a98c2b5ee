"""The message bus port, the idempotent consumer every adapter drives, and the in-process adapter.

Delivery is at-least-once: a consumer applies an event and records its id in one transaction, so
a redelivered event is recognised and skipped. Adapters only decide how events travel and how
failures are retried; handlers cannot tell which adapter runs them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import structlog

from medcloud.platform.db import upsert
from medcloud.platform.events import Envelope, Event
from medcloud.platform.models import DeadLetter, ProcessedEvent
from medcloud.platform.uow import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

Handler = Callable[..., Awaitable[None]]
R = TypeVar("R")


@dataclass(frozen=True)
class Subscription:
    """A context's wish to run `handler` for every `event_type` event.

    A `batched` handler takes a sequence of events instead of one: when the bus hands over many
    at once it does with one statement what would otherwise take one per event (a monitor
    fleet's readings events arrive by the hundred each second).
    """

    event_type: type[Event]
    handler: Handler
    batched: bool = False


class Consumer:
    """Apply one handler to envelopes, once in effect however often they are delivered."""

    def __init__(
        self,
        *,
        name: str,
        subscription: Subscription,
        uow_factory: UnitOfWorkFactory,
        dependencies: dict[str, Any],
    ) -> None:
        self.name = name
        self.routing_keys = (subscription.event_type.routing_key,)
        self._event_type = subscription.event_type
        self._handler = inject(subscription.handler, dependencies)
        self._batched = subscription.batched
        self._uow_factory = uow_factory

    @property
    def batched(self) -> bool:
        """Tell whether the handler takes many events at once (see `handle_many`)."""
        return self._batched

    async def _apply(self, events: Sequence[Event], uow: UnitOfWork) -> None:
        if self._batched:
            await self._handler(events, uow=uow)
            return
        for event in events:
            await self._handler(event, uow=uow)

    async def handle(self, envelope: Envelope) -> None:
        """Run the handler and record the event as processed, in one transaction."""
        await self.handle_many([envelope])

    async def handle_many(self, envelopes: Sequence[Envelope]) -> None:
        """Apply several envelopes in one transaction, all or none.

        Under load the relay hands over hundreds of events at once; one transaction for all of
        them instead of one each is what lets consumers keep up with the writer. A failure
        rolls the whole batch back; the caller then applies the envelopes one by one, so a
        poison event is retried and dead-lettered alone.
        """
        async with self._uow_factory() as uow:
            # Recording the events first, skipping those recorded before, names the fresh ones
            # in one statement; a concurrent delivery of the same event waits on the key until
            # this transaction ends, and then skips it. Asking first which were processed was
            # a query whose cost grew with the table.
            opened: dict[str, Envelope] = {}
            for envelope in envelopes:
                opened.setdefault(envelope.id, envelope)
            fresh = await _mark_processed(uow, self.name, list(opened))
            if fresh:
                await self._apply([opened[i].open(self._event_type) for i in fresh], uow)
                await uow.commit()

    async def dead_letter(self, envelope: Envelope, *, reason: str, attempts: int) -> None:
        """Keep an event this consumer gave up on, with why, where operators can see it."""
        async with self._uow_factory() as uow:
            uow.session.add(
                DeadLetter(
                    consumer=self.name,
                    event_id=envelope.id,
                    routing_key=envelope.type,
                    body=envelope.to_bytes().decode(),
                    reason=reason[:2000],
                    attempts=attempts,
                    failed_at=uow.clock.now(),
                )
            )
            await uow.commit()
        log.error(
            "event.dead_lettered",
            consumer=self.name,
            event_id=envelope.id,
            event_type=envelope.type,
            attempts=attempts,
        )


async def _mark_processed(uow: UnitOfWork, consumer: str, event_ids: Sequence[str]) -> list[str]:
    """Record events as applied by `consumer`, in the transaction that applies them; return
    those not recorded before, in the order given."""
    if not event_ids:
        return []
    now = uow.clock.now()
    # Many rows through one cached statement (SQLAlchemy's "insertmanyvalues"): a VALUES list
    # built per batch would be compiled anew for every batch.
    statement = (
        upsert(uow.session)(ProcessedEvent)
        .on_conflict_do_nothing()
        .returning(ProcessedEvent.event_id)
    )
    # In key order, so two processes' overlapping batches take the keys' locks alike.
    rows = [{"consumer": consumer, "event_id": i, "processed_at": now} for i in sorted(event_ids)]
    recorded = set(await uow.session.scalars(statement, rows))
    return [i for i in event_ids if i in recorded]


def inject(handler: Callable[..., R], dependencies: dict[str, Any]) -> Callable[..., R]:
    """Bind the keyword-only dependencies a handler names (cosmicpython's bootstrap idiom)."""
    code = handler.__code__
    names = code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount]
    wanted = {name: dependencies[name] for name in names if name in dependencies}
    return functools.partial(handler, **wanted)


class Bus(Protocol):
    """Carry envelopes from the outbox relay to consumers."""

    async def connect(self) -> None:
        """Open connections and declare what the adapter needs."""
        ...

    async def close(self) -> None:
        """Stop consuming and close connections."""
        ...

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Hand envelopes over durably; raise if any of them may not have arrived."""
        ...

    async def consume(self, consumer: Consumer) -> None:
        """Start delivering matching envelopes to `consumer`."""
        ...

    async def ping(self) -> None:
        """Raise if the bus cannot be reached."""
        ...


@functools.cache
def topic_matches(pattern: str, routing_key: str) -> bool:
    """Match an AMQP topic pattern: `*` is exactly one word, `#` is zero or more."""
    words, keys = pattern.split("."), routing_key.split(".")

    def match(i: int, j: int) -> bool:
        if i == len(words):
            return j == len(keys)
        if words[i] == "#":
            return any(match(i + 1, k) for k in range(j, len(keys) + 1))
        return j < len(keys) and words[i] in ("*", keys[j]) and match(i + 1, j + 1)

    return match(0, 0)


class InProcessBus:
    """Deliver envelopes to consumers in this process.

    `publish` returns only when every matching consumer has committed the event or dead-lettered
    it, so the relay marks an outbox row published only then and a crash re-delivers it from the
    outbox. Consumers run side by side, each retrying with exponential backoff.

    Several batches may be published at once (the relay keeps a few in flight): each consumer
    takes them in the order `publish` was called, a batch waiting for that consumer's previous
    one, so a quick consumer is never held up by a slow one's backlog and none sees events out
    of order.
    """

    def __init__(self, *, max_attempts: int = 5, backoff_seconds: float = 0.5) -> None:
        self._consumers: list[Consumer] = []
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._tails: dict[str, asyncio.Task[None]] = {}
        """The last batch handed to each consumer, which the next one waits for."""

    async def connect(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Forget the consumers."""
        self._consumers.clear()

    async def ping(self) -> None:
        """Always reachable."""

    async def consume(self, consumer: Consumer) -> None:
        """Register `consumer`."""
        self._consumers.append(consumer)

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Deliver each envelope to every matching consumer, in order per consumer."""
        feeds = []
        for consumer in self._consumers:
            mine = [
                envelope
                for envelope in envelopes
                if any(topic_matches(key, envelope.type) for key in consumer.routing_keys)
            ]
            if not mine:
                continue
            # Chained before the first await, so the order of `publish` calls is the order
            # each consumer applies their batches in.
            previous = self._tails.get(consumer.name)
            feed = asyncio.create_task(self._feed(consumer, mine, after=previous))
            self._tails[consumer.name] = feed
            feeds.append(feed)
        await asyncio.gather(*feeds)

    async def _feed(
        self, consumer: Consumer, mine: Sequence[Envelope], *, after: asyncio.Task[None] | None
    ) -> None:
        if after is not None:
            # Its failure is its own publisher's to handle; this batch goes on regardless.
            await asyncio.wait([after])
        if len(mine) > 1:
            try:
                await consumer.handle_many(mine)
                return
            except Exception as exc:  # noqa: BLE001  (retried one by one below)
                log.info("event.batch.retry", consumer=consumer.name, error=type(exc).__name__)
        for envelope in mine:
            await self._deliver(consumer, envelope)

    async def _deliver(self, consumer: Consumer, envelope: Envelope) -> None:
        reason = ""
        for attempt in range(1, self._max_attempts + 1):
            try:
                await consumer.handle(envelope)
                return
            except Exception as exc:  # noqa: BLE001  (any handler failure is retried)
                reason = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "event.retry", consumer=consumer.name, event_id=envelope.id, attempt=attempt
                )
                if attempt < self._max_attempts:
                    await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
        await consumer.dead_letter(envelope, reason=reason, attempts=self._max_attempts)
