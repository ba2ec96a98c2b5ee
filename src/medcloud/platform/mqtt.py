"""The MQTT wire contract the contexts share: where the broker is, and the topic layout.

Devices publish readings on `devices/{device_id}/telemetry` and receive the platform's
acknowledgements on `devices/{device_id}/ack`; the ingest workers take telemetry through a
shared subscription. The ingest subscriber and the devices context's credential provisioning
both need this, so it lives in the kernel. Building a client does no I/O.

This module is also the fence around aiomqtt's and paho's internals: manual acknowledgement,
unawaited publishing and shared property tables have no public API yet, so every reach past
one is here (`Paho`, `share_property_tables`), for the versions pyproject.toml bounds, and
tests/unit/platform/test_mqtt.py fails loudly when an upgrade moves what they reach for.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    import aiomqtt
    import paho.mqtt.client as paho
    from paho.mqtt.properties import Properties

TELEMETRY_FILTER = "devices/+/telemetry"
"""Every device's telemetry topic."""
ACK_FILTER = "devices/+/ack"
"""Every device's acknowledgement topic."""


def telemetry_topic(device_id: str) -> str:
    """Return the topic a device publishes its readings on."""
    return f"devices/{device_id}/telemetry"


def ack_topic(device_id: str) -> str:
    """Return the topic a device hears whether its readings were stored."""
    return f"devices/{device_id}/ack"


def shared_telemetry(group: str) -> str:
    """Return the shared subscription through which the workers of `group` split telemetry."""
    return f"$share/{group}/{TELEMETRY_FILTER}"


def device_of(topic: str) -> str | None:
    """Return the device id a telemetry topic names, or None if it is not one."""
    parts = topic.split("/")
    if len(parts) == 3 and parts[0] == "devices" and parts[2] == "telemetry" and parts[1]:
        return parts[1]
    return None


def properties(packet: str) -> Properties:
    """Return empty MQTT v5 properties for a packet type (`CONNECT`, `PUBLISH`, …)."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    return Properties(getattr(PacketTypes, packet))  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class BrokerAddress:
    """A broker and the credentials to present to it."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        """Read `mqtt://user:password@host:port` (or `mqtts://…`, TLS with system CAs)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("an MQTT URL looks like mqtt://user:password@host:1883")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    def as_user(self, username: str, password: str | None) -> BrokerAddress:
        """Return the same broker with other credentials."""
        return replace(self, username=username, password=password)

    def client(self, **options: Any) -> aiomqtt.Client:
        """Build, without connecting, an MQTT v5 client of this broker (`options`: aiomqtt's)."""
        import aiomqtt  # only processes that speak MQTT pay for importing it

        return aiomqtt.Client(
            self.host,
            self.port,
            username=self.username,
            password=self.password,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=ssl.create_default_context() if self.tls else None,
            **options,
        )


class Paho:
    """The paho client inside an aiomqtt one, for what aiomqtt cannot do yet.

    aiomqtt 2.5 has no manual acknowledgement (empicano/aiomqtt#345), and its publish awaits each
    broker PUBACK while scanning every pending call, which costs more than the message at
    thousands in flight.
    """

    def __init__(self, client: aiomqtt.Client) -> None:
        import paho.mqtt.client as paho

        inner = getattr(client, "_client", None)
        if not isinstance(inner, paho.Client):
            raise RuntimeError(
                "aiomqtt no longer keeps its paho client as `_client`: "
                "medcloud.platform.mqtt needs updating for this aiomqtt"
            )
        self._paho = inner

    def acknowledge_manually(self) -> None:
        """Have nothing acknowledged until `acknowledge` (before connecting, so no message of
        a resumed session is acknowledged early)."""
        self._paho.manual_ack_set(True)

    def acknowledge(self, message: aiomqtt.Message) -> None:
        """Send the PUBACK of a message taken with manual acknowledgement."""
        self._paho.ack(message.mid, message.qos)

    def publish(
        self, topic: str, payload: bytes, *, qos: int, properties: Properties | None
    ) -> paho.MQTTMessageInfo:
        """Queue a message for the socket without waiting for the broker's PUBACK."""
        return self._paho.publish(topic, payload, qos=qos, properties=properties)


def share_property_tables() -> None:
    """Have paho build its MQTT v5 property tables once, instead of for every packet.

    paho's `Properties.__init__` rebuilds its tables of property names and types (thirty-odd
    list lookups) for every PUBLISH read or written with properties: in a profile of an ingest
    worker under load, an eighth of its CPU. Nothing changes those tables per instance, so all
    instances can share one copy. Left alone if paho's Properties no longer looks as expected;
    calling it again does nothing.
    """
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    if getattr(Properties, "_medcloud_shared_tables", False):
        return
    prototype = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    tables = {name: getattr(prototype, name, None) for name in ("types", "names", "properties")}
    if set(vars(prototype)) != {"packetType", *tables} or None in tables.values():
        return

    def init(self: Properties, packetType: int) -> None:  # noqa: N803  (paho's own name)
        object.__setattr__(self, "packetType", packetType)
        for name, table in tables.items():
            object.__setattr__(self, name, table)

    Properties.__init__ = init  # type: ignore[method-assign]
    Properties._medcloud_shared_tables = True  # type: ignore[attr-defined]
