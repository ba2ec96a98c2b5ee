"""RabbitMQ adapter of the bus port (aio-pika).

Topology, for exchange `medical_data` and a consumer `analytics.raise_alerts`:
- `medical_data` (topic, durable) with an alternate exchange, so an event nobody is bound to yet
  is parked in `medical_data.unrouted` instead of being dropped;
- `medcloud.analytics.raise_alerts` (durable queue) bound to the consumer's routing keys;
- `….retry` holds failed deliveries for a per-message delay, then dead-letters them back to the
  consumer's queue; after `max_attempts` the event goes to `….dlq` with its reason.
Publishing waits for publisher confirms with `mandatory`; a consumer acknowledges only after its
own transaction has committed. A batched consumer (a monitor fleet's readings events) applies
whatever has arrived meanwhile in one transaction and acknowledges it all after that commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)

from medcloud.platform.bus import Consumer
from medcloud.platform.events import Envelope

log = structlog.get_logger(__name__)


class RabbitMQBus:
    """Carry envelopes over RabbitMQ."""

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "medical_data",
        queue_prefix: str = "medcloud",
        max_attempts: int = 5,
        backoff_seconds: float = 0.5,
        prefetch: int = 64,
    ) -> None:
        self._url = url
        self._exchange_name = exchange
        self._prefix = queue_prefix
        self._max_attempts = max_attempts
        self._backoff = backoff_seconds
        self._prefetch = prefetch
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._consumer_channels: list[AbstractChannel] = []

    async def connect(self) -> None:
        """Connect and declare the exchange with its alternate exchange."""
        self._connection = await aio_pika.connect_robust(self._url)
        self._publish_channel = await self._connection.channel(
            publisher_confirms=True, on_return_raises=True
        )
        unrouted = await self._publish_channel.declare_exchange(
            f"{self._exchange_name}.unrouted", aio_pika.ExchangeType.FANOUT, durable=True
        )
        parked = await self._publish_channel.declare_queue(
            f"{self._exchange_name}.unrouted", durable=True
        )
        await parked.bind(unrouted)
        self._exchange = await self._publish_channel.declare_exchange(
            self._exchange_name,
            aio_pika.ExchangeType.TOPIC,
            durable=True,
            arguments={"alternate-exchange": f"{self._exchange_name}.unrouted"},
        )

    async def close(self) -> None:
        """Close channels and the connection."""
        if self._connection is not None:
            await self._connection.close()
        self._connection = None
        self._consumer_channels.clear()

    async def ping(self) -> None:
        """Raise unless the connection is open."""
        if self._connection is None or self._connection.is_closed:
            raise ConnectionError("RabbitMQ connection is closed")

    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Publish persistent messages and wait for every confirm."""
        if self._exchange is None:
            raise RuntimeError("connect() first")
        exchange = self._exchange
        await asyncio.gather(
            *(
                exchange.publish(_message(envelope), routing_key=envelope.type, mandatory=True)
                for envelope in envelopes
            )
        )

    async def consume(self, consumer: Consumer) -> None:
        """Declare the consumer's queues and start consuming."""
        if self._connection is None:
            raise RuntimeError("connect() first")
        channel = await self._connection.channel(publisher_confirms=True)
        # A batched consumer takes a batch per transaction: let enough wait to make one.
        prefetch = max(self._prefetch, BATCH_PREFETCH) if consumer.batched else self._prefetch
        await channel.set_qos(prefetch_count=prefetch)
        self._consumer_channels.append(channel)
        queue_name = f"{self._prefix}.{consumer.name}"
        exchange = await channel.get_exchange(self._exchange_name)
        queue = await channel.declare_queue(queue_name, durable=True)
        for key in consumer.routing_keys:
            await queue.bind(exchange, routing_key=key)
        await channel.declare_queue(
            f"{queue_name}.retry",
            durable=True,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue_name},
        )
        await channel.declare_queue(f"{queue_name}.dlq", durable=True)

        if consumer.batched:
            batch = _Batch(self, channel, queue_name, consumer, most=prefetch)
            await queue.consume(batch.add)
            return

        async def on_message(message: AbstractIncomingMessage) -> None:
            await self._on_message(channel, queue_name, consumer, message)

        await queue.consume(on_message)

    async def _on_message(
        self,
        channel: AbstractChannel,
        queue_name: str,
        consumer: Consumer,
        message: AbstractIncomingMessage,
    ) -> None:
        attempt = int(str(message.headers.get("x-attempt", 1)))
        try:
            envelope = Envelope.from_bytes(message.body)
        except ValueError as exc:
            await self._route(channel, f"{queue_name}.dlq", message.body, attempt, repr(exc))
            await message.ack()
            return
        try:
            await consumer.handle(envelope)
        except Exception as exc:  # noqa: BLE001  (any handler failure is retried, then parked)
            reason = f"{type(exc).__name__}: {exc}"
            try:
                if attempt < self._max_attempts:
                    log.warning(
                        "event.retry", consumer=consumer.name, event_id=envelope.id, attempt=attempt
                    )
                    delay = self._backoff * 2 ** (attempt - 1)
                    await self._route(
                        channel, f"{queue_name}.retry", message.body, attempt + 1, None, delay
                    )
                else:
                    await consumer.dead_letter(envelope, reason=reason, attempts=attempt)
                    await self._route(channel, f"{queue_name}.dlq", message.body, attempt, reason)
            except Exception:  # noqa: BLE001  (cannot park it: let the broker redeliver)
                await message.nack(requeue=True)
                return
        await message.ack()

    @staticmethod
    async def _route(
        channel: AbstractChannel,
        queue: str,
        body: bytes,
        attempt: int,
        reason: str | None,
        delay: float | None = None,
    ) -> None:
        headers: dict[str, str | int] = {"x-attempt": attempt}
        if reason is not None:
            headers["x-reason"] = reason[:2000]
        await channel.default_exchange.publish(
            aio_pika.Message(
                body,
                headers=headers,  # type: ignore[arg-type]
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
                expiration=delay,
            ),
            routing_key=queue,
        )


class _Batch:
    """Messages of one batched consumer, applied together in one transaction.

    A batch goes as soon as the consumer is free: messages that arrive while one batch is being
    applied make up the next, so batches grow with the load and the wait stays one transaction.
    A batch that fails is applied again message by message, so a poison event is retried and
    dead-lettered alone.
    """

    def __init__(
        self,
        bus: RabbitMQBus,
        channel: AbstractChannel,
        queue_name: str,
        consumer: Consumer,
        *,
        most: int,
    ) -> None:
        self._bus = bus
        self._channel = channel
        self._queue_name = queue_name
        self._consumer = consumer
        self._most = most
        self._pending: list[AbstractIncomingMessage] = []
        self._busy = asyncio.Lock()

    async def add(self, message: AbstractIncomingMessage) -> None:
        """Take a delivered message; apply it with the others waiting when the consumer is free."""
        self._pending.append(message)
        async with self._busy:
            if self._pending:
                await self._apply(self._pending[: self._most])

    async def _apply(self, messages: list[AbstractIncomingMessage]) -> None:
        del self._pending[: len(messages)]
        opened: list[tuple[AbstractIncomingMessage, Envelope]] = []
        for message in messages:
            try:
                opened.append((message, Envelope.from_bytes(message.body)))
            except ValueError:
                await self._bus._on_message(
                    self._channel, self._queue_name, self._consumer, message
                )
        if not opened:
            return
        try:
            await self._consumer.handle_many([envelope for _, envelope in opened])
        except Exception as exc:  # noqa: BLE001  (retried one by one below)
            log.info("event.batch.retry", consumer=self._consumer.name, error=type(exc).__name__)
            for message, _ in opened:
                await self._bus._on_message(
                    self._channel, self._queue_name, self._consumer, message
                )
            return
        # Batches go one at a time in delivery order, and a message refused above was acked
        # or parked on its own: every unacknowledged delivery up to the last of this batch is
        # in this batch, so one acknowledgement covers them all.
        await opened[-1][0].ack(multiple=True)


BATCH_PREFETCH = 1000
"""Unacknowledged messages a batched consumer may hold: its largest batch."""


def _message(envelope: Envelope) -> aio_pika.Message:
    return aio_pika.Message(
        envelope.to_bytes(),
        message_id=envelope.id,
        type=envelope.type,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        timestamp=envelope.occurred_at,
    )
