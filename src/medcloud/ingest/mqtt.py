"""The MQTT transport: readings devices publish, acknowledged to the broker only once stored.

Devices publish the same JSON as `POST /api/v1/devices/{id}/data` on `devices/{id}/telemetry`
at QoS 1. The workers hold one shared subscription (`$share/medcloud/devices/+/telemetry`), each
in a persistent session (clean start off, a session expiry) under a stable client id, and
acknowledge by hand: a message's PUBACK goes to the broker only after its readings are
committed, or refused and kept in quarantine — so a worker that dies loses nothing, the broker
hands its unacknowledged messages over again when it comes back. After the commit the worker
also answers the device on `devices/{id}/ack`, because the broker's own PUBACK to the device
only means that the broker has the message.

Up to Receive Maximum messages are handled at once, so the micro-batch writer commits many in
one transaction. When the writer is backlogged a message stays unacknowledged and is tried again
after a pause; the broker sends no more than Receive Maximum unacknowledged messages, so memory
stays bounded and the backlog waits at the broker.

What becomes of one message (its readings, the answer to the device) is in `mqtt_messages.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from medcloud.config import Settings
from medcloud.ingest.mqtt_messages import TRANSPORT, ack_body, receive_message, split_msg_id
from medcloud.ingest.writer import running_writer
from medcloud.platform.directory import DeviceDirectory, DeviceRef
from medcloud.platform.dynsec import Acl, DynamicSecurity, dynamic_security, failed, require
from medcloud.platform.errors import Invalid, Unavailable
from medcloud.platform.metrics import Metrics
from medcloud.platform.mqtt import (
    ACK_FILTER,
    TELEMETRY_FILTER,
    BrokerAddress,
    Paho,
    ack_topic,
    device_of,
    properties,
    share_property_tables,
    shared_telemetry,
)
from medcloud.platform.uow import UnitOfWorkFactory

if TYPE_CHECKING:
    import aiomqtt

log = structlog.get_logger(__name__)

INGEST_ROLE = "medcloud-ingest"
RECONNECT_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 5.0
DRAIN_SECONDS = 10.0
"""How long a stopping subscriber lets messages being stored finish (and be acknowledged)."""


def worker_acls(share_group: str) -> list[Acl]:
    """What the ingest workers may do on the broker: take telemetry, answer devices."""
    return [
        {"acltype": "subscribePattern", "topic": shared_telemetry(share_group), "allow": True},
        {"acltype": "publishClientReceive", "topic": TELEMETRY_FILTER, "allow": True},
        {"acltype": "publishClientSend", "topic": ACK_FILTER, "allow": True},
    ]


async def ensure_worker_access(
    admin: DynamicSecurity, *, username: str, password: str, share_group: str
) -> None:
    """Give the workers their broker role and client (dynamic security) where missing.

    An existing client keeps its password: resetting it would disconnect every worker using it,
    so a changed worker password is set with `mosquitto_ctrl dynsec setClientPassword`.
    """
    await admin.ensure_role(INGEST_ROLE, worker_acls(share_group))
    (created,) = await admin.execute(
        [
            {
                "command": "createClient",
                "username": username,
                "password": password,
                "roles": [{"rolename": INGEST_ROLE}],
            }
        ]
    )
    if failed(created, "already exists"):
        await admin.ensure_client_role(username, INGEST_ROLE)
    else:
        require(created)


class DeviceCache:
    """Devices by id, remembered briefly; unknown ones too, so a flood costs one lookup.

    Concurrent misses for one device share a lookup: a worker starting on a backlog receives
    Receive Maximum messages at once, mostly from devices it has not looked up yet.
    """

    def __init__(self, directory: DeviceDirectory, ttl_seconds: float) -> None:
        self._directory = directory
        self._ttl = ttl_seconds
        self._entries: dict[str, tuple[float, DeviceRef | None]] = {}
        self._lookups: dict[str, asyncio.Task[DeviceRef | None]] = {}

    async def get(self, device_id: str) -> tuple[DeviceRef | None, bool]:
        """Return the device (None: unknown) and whether this call looked it up."""
        now = time.monotonic()
        entry = self._entries.get(device_id)
        if entry is not None and entry[0] > now:
            return entry[1], False
        lookup = self._lookups.get(device_id)
        if lookup is not None:
            return await asyncio.shield(lookup), False
        lookup = asyncio.ensure_future(self._directory.get(device_id))
        self._lookups[device_id] = lookup
        try:
            device = await asyncio.shield(lookup)
        finally:
            if self._lookups.get(device_id) is lookup:
                del self._lookups[device_id]
        if len(self._entries) > 100_000:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        self._entries[device_id] = (time.monotonic() + self._ttl, device)
        return device, True


@dataclass
class _Link:
    """One connection to the broker; acknowledgements are sent only on the one that delivered."""

    client: aiomqtt.Client
    paho: Paho
    open: bool = True


class Subscriber:
    """Take telemetry from the broker, store it, answer the device, then acknowledge it."""

    def __init__(
        self,
        *,
        settings: Settings,
        uow_factory: UnitOfWorkFactory,
        devices: DeviceDirectory,
        metrics: Metrics,
        services: dict[str, Any],
        client_id: str | None = None,
    ) -> None:
        self._settings = settings
        self._uow_factory = uow_factory
        self._directory = devices
        self._devices = DeviceCache(devices, settings.mqtt.device_cache_seconds)
        self._metrics = metrics
        self._services = services
        self._client_id = client_id or settings.mqtt.client_id
        self._address = BrokerAddress.from_url(settings.mqtt.url)
        self._slots = asyncio.Semaphore(settings.mqtt.receive_maximum)
        self._handlers: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Stay subscribed until `stop`, reconnecting with backoff when the broker goes away."""
        share_property_tables()
        delay = RECONNECT_FIRST_SECONDS
        admin = dynamic_security(self._settings)
        provisioned = admin is None or not self._address.username
        while not stop.is_set():
            subscribed = False
            try:
                if not provisioned:
                    assert admin is not None and self._address.username  # noqa: S101
                    # With the broker's admin credentials, a worker sees to its own access.
                    await ensure_worker_access(
                        admin,
                        username=self._address.username,
                        password=self._address.password or "",
                        share_group=self._settings.mqtt.share_group,
                    )
                    provisioned = True
                subscribed = await self._session(stop)
            except Exception as exc:  # noqa: BLE001  (aiomqtt's errors, OSError: try again)
                log.warning(
                    "ingest.mqtt.unavailable",
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
            delay = min(delay * 2, self._settings.mqtt.reconnect_max_seconds)
        self._stopping.set()
        await self._drain()

    async def _session(self, stop: asyncio.Event) -> bool:
        """Connect, subscribe and take messages until `stop` (True) or the connection drops."""
        mqtt = self._settings.mqtt
        connect = properties("CONNECT")
        connect.SessionExpiryInterval = mqtt.session_expiry_seconds
        connect.ReceiveMaximum = mqtt.receive_maximum
        client = self._address.client(
            identifier=self._client_id,
            clean_start=False,  # resume the session that holds what was not acknowledged
            properties=connect,
            keepalive=mqtt.keepalive_seconds,
            # No limit on our own QoS 1 answers to devices: paho would hold back those beyond it
            # (20 by default) while the PUBACK that follows each went out ahead of it.
            max_inflight_messages=0,
        )
        paho = Paho(client)
        paho.acknowledge_manually()
        async with client:
            link = _Link(client, paho)
            try:
                await client.subscribe(shared_telemetry(mqtt.share_group), qos=1)
                self._metrics.mqtt_connected.set(1)
                log.info(
                    "ingest.mqtt.subscribed",
                    client_id=self._client_id,
                    group=mqtt.share_group,
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
                # Stopping: let what is being stored finish and be acknowledged on this link.
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
            log.exception("ingest.mqtt.failed", topic=message.topic.value)
        finally:
            self._metrics.mqtt_in_flight.dec()

    async def _take(self, link: _Link, message: aiomqtt.Message) -> None:
        metrics = self._metrics
        correlation: bytes | None = getattr(message.properties, "CorrelationData", None)
        payload, msg_id = split_msg_id(bytes(message.payload))
        if msg_id is None and correlation is not None:
            msg_id = correlation.decode("utf-8", "replace")
        first = self._settings.mqtt.retry_seconds
        delay = first
        while True:
            try:
                device_id, body = await self._store(message, payload, msg_id)
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
                        "ingest.mqtt.store_failed",
                        topic=message.topic.value,
                        error=type(exc).__name__,
                        retry_in=pause,
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause)
        if body is not None:
            self._answer(link, device_id, body, correlation)
        self._acknowledge(link, message)
        metrics.mqtt_messages.labels(body["status"] if body else "unknown_device").inc()

    async def _store(
        self, message: aiomqtt.Message, payload: bytes, msg_id: str | None
    ) -> tuple[str, dict[str, Any] | None]:
        """Store a message's readings; return its device and the answer for it (None: none)."""
        device_id = device_of(message.topic.value) or ""
        device, fresh = await self._devices.get(device_id) if device_id else (None, True)
        if device is None or device.decommissioned:
            # The broker's ACLs let only a provisioned device publish here; what is left is a
            # device taken out of service (or deleted) with messages still queued. Counted and
            # acknowledged, never silently dropped; logged once per lookup, not per message.
            self._metrics.readings_rejected.labels(TRANSPORT, "unknown_device").inc()
            if fresh:
                log.warning(
                    "ingest.mqtt.unknown_device",
                    device_id=device_id,
                    decommissioned=device is not None,
                )
            return device_id, None
        try:
            result = await receive_message(
                uow=self._uow_factory(),
                devices=self._directory,
                device=device,
                payload=payload,
                content_type=getattr(message.properties, "ContentType", None),
                content_encoding=_user_property(message.properties, "content-encoding"),
                settings=self._settings,
                metrics=self._metrics,
                writer=running_writer(self._services),
            )
        except Invalid as refusal:
            return device_id, ack_body(msg_id, None, refusal)
        return device_id, ack_body(msg_id, result, None)

    def _answer(
        self, link: _Link, device_id: str, body: dict[str, Any], correlation: bytes | None
    ) -> None:
        """Tell the device what became of its message (QoS 1, not awaited).

        Written to the socket before the PUBACK that follows it (paho holds none back), so a
        broker that got the PUBACK got the answer too; if the link drops first, the redelivered
        message is stored as a duplicate and answered again.
        """
        if not link.open:
            return
        answer = None
        if correlation is not None:  # built only when needed: properties cost per message
            answer = properties("PUBLISH")
            answer.CorrelationData = correlation
        link.paho.publish(ack_topic(device_id), orjson.dumps(body), qos=1, properties=answer)

    def _acknowledge(self, link: _Link, message: aiomqtt.Message) -> None:
        if link.open:
            link.paho.acknowledge(message)


class _Dropped(Exception):
    """The connection dropped after the subscription was in place."""


def _user_property(properties: Any, name: str) -> str | None:
    for key, value in getattr(properties, "UserProperty", None) or ():
        if key.lower() == name:
            return str(value)
    return None


async def consume_mqtt(
    *,
    settings: Settings,
    uow_factory: UnitOfWorkFactory,
    devices: DeviceDirectory,
    metrics: Metrics,
    services: dict[str, Any],
    stop: asyncio.Event,
    client_id: str | None = None,
) -> None:
    """Store the readings devices publish over MQTT until `stop` (only with `mqtt.url` set).

    `client_id` overrides the configured one, for a second subscriber in the same process.
    """
    if not settings.mqtt.url or not settings.mqtt.subscribe:
        await stop.wait()  # returning would have the supervisor start it again at once
        return
    subscriber = Subscriber(
        settings=settings,
        uow_factory=uow_factory,
        devices=devices,
        metrics=metrics,
        services=services,
        client_id=client_id,
    )
    await subscriber.run(stop)
