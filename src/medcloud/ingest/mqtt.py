"""The MQTT transport: readings devices publish, acknowledged to the broker only once stored.

Devices publish the same JSON as `POST /api/v1/devices/{id}/data` on `devices/{id}/telemetry`
at QoS 1. The workers take it through one shared subscription, and acknowledge a message to the
broker only after its readings are committed or refused (`platform/subscriber.py`). After the
commit the worker also answers the device on `devices/{id}/ack`, because the broker's own
PUBACK to the device only means that the broker has the message.

This module is the adapter between the two: a message in, the ingest use case (`intake.py`),
an answer out. What one message's body becomes is in `mqtt_messages.py`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
import structlog

from medcloud.config import Settings
from medcloud.ingest.intake import Intake, Transport
from medcloud.ingest.mqtt_messages import ack_body, receive_message, split_msg_id
from medcloud.platform.dynsec import dynamic_security
from medcloud.platform.errors import Invalid
from medcloud.platform.metrics import Metrics
from medcloud.platform.mqtt import ack_topic, device_of, shared_telemetry
from medcloud.platform.mqtt_workers import provision_workers
from medcloud.platform.subscriber import Answer, Handled, SharedSubscriber

if TYPE_CHECKING:
    import aiomqtt

log = structlog.get_logger(__name__)


async def take_telemetry(intake: Intake, message: aiomqtt.Message) -> Handled:
    """Store one telemetry message's readings; say what became of it, and what to answer."""
    device_id = device_of(message.topic.value) or ""
    device, looked_up = await intake.sender(device_id) if device_id else (None, True)
    if device is None:
        # The broker's ACLs let only a provisioned device publish here; what is left is a
        # device taken out of service (or deleted) with messages still queued. Counted and
        # acknowledged, never silently dropped; logged once per look-up, not per message.
        intake.metrics.readings_rejected.labels(Transport.MQTT, "unknown_device").inc()
        if looked_up:
            log.warning("ingest.mqtt.unknown_device", device_id=device_id)
        return Handled("unknown_device")
    correlation: bytes | None = getattr(message.properties, "CorrelationData", None)
    payload, msg_id = split_msg_id(bytes(message.payload))
    if msg_id is None and correlation is not None:
        msg_id = correlation.decode("utf-8", "replace")
    try:
        result = await receive_message(
            intake,
            device,
            payload,
            content_type=getattr(message.properties, "ContentType", None),
            content_encoding=_user_property(message.properties, "content-encoding"),
        )
        body = ack_body(msg_id, result, None)
    except Invalid as refusal:
        body = ack_body(msg_id, None, refusal)
    return Handled(body["status"], Answer(ack_topic(device_id), orjson.dumps(body), correlation))


def _user_property(properties: Any, name: str) -> str | None:
    for key, value in getattr(properties, "UserProperty", None) or ():
        if key.lower() == name:
            return str(value)
    return None


async def consume_mqtt(
    *,
    settings: Settings,
    intake: Intake,
    metrics: Metrics,
    stop: asyncio.Event,
    client_id: str | None = None,
) -> None:
    """Store the readings devices publish over MQTT until `stop` (only with `mqtt.url` set).

    `client_id` overrides the configured one, for a second subscriber in the same process.
    """
    if not settings.mqtt.url or not settings.mqtt.subscribe:
        await stop.wait()  # returning would have the supervisor start it again at once
        return
    admin = dynamic_security(settings)
    provision = None
    if admin is not None:

        async def provision() -> None:
            # With the broker's admin credentials, a worker sees to its own access.
            await provision_workers(admin, settings.mqtt)

    async def handle(message: aiomqtt.Message) -> Handled:
        return await take_telemetry(intake, message)

    subscriber = SharedSubscriber(
        settings=settings.mqtt,
        topic=shared_telemetry(settings.mqtt.share_group),
        handle=handle,
        metrics=metrics,
        provision=provision,
        client_id=client_id,
    )
    await subscriber.run(stop)
