"""Take messages from a shared MQTT subscription, and acknowledge each only once it is handled.

The workers hold one shared subscription (`$share/{group}/devices/+/telemetry`), each in a
persistent session (clean start off, a session expiry) under a stable client id, and
acknowledge by hand: a message's PUBACK goes to the broker only after its handler has finished
with it — for ingest, after its readings are committed or refused and kept in quarantine — so a
worker that dies loses nothing: the broker hands its unacknowledged messages over again when it
comes back. A handler's answer (ingest's "stored" to the device) is written to the socket
before that PUBACK.

Up to Receive Maximum messages are handled at once. When a handler cannot take a message now
(`Unavailable`: a backlog) the message stays unacknowledged and is tried again after a pause;
the broker sends no more than Receive Maximum unacknowledged messages, so memory stays bounded
and the backlog waits at the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from medcloud.config import MqttSettings
from medcloud.platform.errors import Unavailable
from medcloud.platform.metrics import Metrics
from medcloud.platform.mqtt import BrokerAddress, Paho, properties, share_property_tables

if TYPE_CHECKING:
    import aiomqtt

log = structlog.get_logger(__name__)

RECONNECT_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 5.0
DRAIN_SECONDS = 10.0
"""How long a stopping subscriber lets messages being handled finish (and be acknowledged)."""


@dataclass(frozen=True)
class Answer:
    """A message to publish back (QoS 1) before the handled message is acknowledged."""

    topic: str
    payload: bytes
    correlation: bytes | None = None


@dataclass(frozen=True)
class Handled:
    """What became of a message: a metrics outcome (`stored`, `refused`, …) and any answer."""

    outcome: str
    answer: Answer | None = None


Handler = Callable[["aiomqtt.Message"], Awaitable[Handled]]
"""Handle one message; raise to have it tried again (it stays unacknowledged meanwhile)."""


@dataclass
class _Link:
    """One connection to the broker; acknowledgements are sent only on the one that delivered."""

    client: aiomqtt.Client
    paho: Paho
    open: bool = True


class SharedSubscriber:
    """Take messages of a shared subscription, handle them, answer, then acknowledge them."""

    def __init__(
        self,
        *,
        settings: MqttSettings,
        topic: str,
        handle: Handler,
        metrics: Metrics,
        provision: Callable[[], Awaitable[None]] | None = None,
        client_id: str | None = None,
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._handle_message = handle
        self._metrics = metrics
        self._provision = provision
        self._client_id = client_id or settings.client_id
        self._slots = asyncio.Semaphore(settings.receive_maximum)
        self._handlers: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Stay subscribed until `stop`, reconnecting with backoff when the broker goes away."""
        share_property_tables()
        delay = RECONNECT_FIRST_SECONDS
        provisioned = self._provision is None
        while not stop.is_set():
            subscribed = False
            try:
                if not provisioned:
                    assert self._provision is not None  # noqa: S101
                    await self._provision()
                    provisioned = True
                subscribed = await self._session(stop)
            except Exception as exc:  # noqa: BLE001  (aiomqtt's errors, OSError: try again)
                log.warning(
                    "mqtt.subscriber.unavailable",
                    client_id=self._client_id,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in=delay,
                )
                subscribed = isinstance(exc, _Dropped)
            self._metrics.mqtt_connected.set(0)
            if stop.is_set():
                break
            if subscribed:
                delay = RECONNECT_FIRST_SECONDS
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, self._settings.reconnect_max_seconds)
        self._stopping.set()
        await self._drain()

    async def _session(self, stop: asyncio.Event) -> bool:
        """Connect, subscribe and take messages until `stop` (True) or the connection drops."""
        mqtt = self._settings
        client, paho = _persistent_client(mqtt, self._client_id)
        async with client:
            link = _Link(client, paho)
            try:
                await client.subscribe(self._topic, qos=1)
                self._metrics.mqtt_connected.set(1)
                log.info(
                    "mqtt.subscriber.subscribed",
                    client_id=self._client_id,
                    topic=self._topic,
                    receive_maximum=mqtt.receive_maximum,
                )
                reader = asyncio.create_task(self._read(link), name="mqtt-reader")
                stopping = asyncio.create_task(stop.wait())
                try:
                    done, _ = await asyncio.wait(
                        {reader, stopping}, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    stopping.cancel()
                    if not reader.done():
                        reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await reader
                if reader in done:
                    # Reading ends only when the connection drops.
                    error = reader.exception()
                    raise _Dropped(str(error or "the broker closed the connection")) from error
                # Stopping: let what is being handled finish and be acknowledged on this link.
                self._stopping.set()
                await self._drain()
                return True
            finally:
                link.open = False

    async def _read(self, link: _Link) -> None:
        async for message in link.client.messages:
            await self._slots.acquire()
            task = asyncio.create_task(self._handle(link, message))
            self._handlers.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._handlers.discard(task)
        self._slots.release()

    async def _drain(self) -> None:
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=DRAIN_SECONDS)

    async def _handle(self, link: _Link, message: aiomqtt.Message) -> None:
        self._metrics.mqtt_in_flight.inc()
        try:
            await self._take(link, message)
        except Exception:  # left unacknowledged: redelivered next session
            log.exception("mqtt.subscriber.failed", topic=message.topic.value)
        finally:
            self._metrics.mqtt_in_flight.dec()

    async def _take(self, link: _Link, message: aiomqtt.Message) -> None:
        metrics = self._metrics
        first = self._settings.retry_seconds
        delay = first
        while True:
            try:
                handled = await self._handle_message(message)
                break
            except Exception as exc:  # noqa: BLE001  (backlog, database outage: try again)
                if not link.open or self._stopping.is_set():
                    # Left unacknowledged: the broker hands it over again on the next session.
                    metrics.mqtt_messages.labels("abandoned").inc()
                    return
                metrics.mqtt_messages.labels("retried").inc()
                if isinstance(exc, Unavailable):
                    # A backlog clears within a few batches: try again soon, not in lockstep.
                    pause = first * random.uniform(0.5, 1.5)  # noqa: S311  (jitter)
                else:
                    pause, delay = delay, min(delay * 2, RETRY_MAX_SECONDS)
                    log.warning(
                        "mqtt.subscriber.handler_failed",
                        topic=message.topic.value,
                        error=type(exc).__name__,
                        retry_in=pause,
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause)
        if handled.answer is not None:
            self._answer(link, handled.answer)
        if link.open:
            link.paho.acknowledge(message)
        metrics.mqtt_messages.labels(handled.outcome).inc()

    def _answer(self, link: _Link, answer: Answer) -> None:
        """Publish the answer (QoS 1, not awaited).

        Written to the socket before the PUBACK that follows it (paho holds none back), so a
        broker that got the PUBACK got the answer too; if the link drops first, the redelivered
        message is handled again and answered again.
        """
        if not link.open:
            return
        extra = None
        if answer.correlation is not None:  # built only when needed: properties cost per message
            extra = properties("PUBLISH")
            extra.CorrelationData = answer.correlation
        link.paho.publish(answer.topic, answer.payload, qos=1, properties=extra)


async def reserve_session(settings: MqttSettings, topic: str, client_id: str) -> None:
    """Make `client_id`'s persistent session exist, subscribed to `topic`, and leave it waiting.

    The broker then queues what matches for that session until a subscriber resumes it under
    the same id. Anything delivered during this short connection stays unacknowledged, so the
    broker hands it over again on that resumption.
    """
    client, _ = _persistent_client(settings, client_id)
    async with client:
        await client.subscribe(topic, qos=1)
    log.info("mqtt.subscriber.session_reserved", client_id=client_id, topic=topic)


def _persistent_client(settings: MqttSettings, client_id: str) -> tuple[aiomqtt.Client, Paho]:
    """A client that resumes (or starts) `client_id`'s session and acknowledges by hand."""
    connect = properties("CONNECT")
    connect.SessionExpiryInterval = settings.session_expiry_seconds
    connect.ReceiveMaximum = settings.receive_maximum
    client = BrokerAddress.from_url(settings.url).client(
        identifier=client_id,
        clean_start=False,  # resume the session that holds what was not acknowledged
        properties=connect,
        keepalive=settings.keepalive_seconds,
        # No limit on our own QoS 1 answers: paho would hold back those beyond it (20 by
        # default) while the PUBACK that follows each went out ahead of it.
        max_inflight_messages=0,
    )
    paho = Paho(client)
    paho.acknowledge_manually()  # before connecting: nothing of a resumed session goes early
    return client, paho


class _Dropped(Exception):
    """The connection dropped after the subscription was in place."""
