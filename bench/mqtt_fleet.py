"""A fleet of MQTT devices on one thread: paho clients driven by one selector, no event loop.

The fleet shares the machine's two cores with the platform it measures, so a message must cost
it as little as possible: no coroutine, future or queue per message, only paho's packet work and
a callback that publishes a device's next message as soon as an earlier one is answered.

Each device logs in with its id and token, subscribes to `devices/{id}/ack`, and keeps up to
`window` messages waiting for the platform's answer there, which the ingest worker sends only
after the readings are committed. Latency is publish → that answer, so it is send → stored.
"""

from __future__ import annotations

import datetime as dt
import selectors
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from medcloud.platform.mqtt import ack_topic, share_property_tables, telemetry_topic

PROBE = b"probe"
PROBE_EVERY_SECONDS = 2.0
MISC_EVERY_SECONDS = 1.0


@dataclass
class Tally:
    """What the devices saw."""

    sent: int = 0
    acked: int = 0
    stored: int = 0
    refused: int = 0
    latencies: list[float] = field(default_factory=list)

    def reset(self) -> None:
        """Forget the probes: count from the start of the timed run."""
        self.sent = self.acked = self.stored = self.refused = 0
        self.latencies.clear()


class Device:
    """One device: its paho client, what it has in flight, and what it sends next."""

    def __init__(
        self,
        fleet: Fleet,
        identity: dict[str, Any],
        *,
        body: Callable[[int], bytes],
        probe: bytes,
        window: int,
    ) -> None:
        self.id = str(identity["id"])
        self._fleet = fleet
        self._body = body
        self._probe = probe
        self._window = window
        self._topic = telemetry_topic(self.id)
        self._sent_at: dict[bytes, float] = {}
        self._n = 0
        self.heard = False
        self.probed_at = 0.0
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-{self.id}",
            protocol=paho.MQTTv5,
        )
        client.username_pw_set(self.id, str(identity["token"]))
        client.max_inflight_messages_set(0)  # the window is the limit
        client.on_connect = self._connected
        client.on_message = self._answered
        client.on_socket_register_write = fleet.want_write
        self.client = client

    @property
    def in_flight(self) -> int:
        """Messages sent and not yet answered."""
        return len(self._sent_at)

    def _connected(self, client: paho.Client, *_: Any) -> None:
        client.subscribe(ack_topic(self.id), qos=1)

    def probe(self, now: float) -> None:
        """Send the probe reading (the same each time, so stored once) until it is answered.

        A broker drops what is published before the workers' shared subscription exists, so
        the clock starts only once every device has been heard end to end.
        """
        self.probed_at = now
        self._publish(self._probe, PROBE)

    def fill(self) -> None:
        """Put the whole window in flight."""
        while len(self._sent_at) < self._window and self._fleet.sending:
            self.send()

    def send(self) -> None:
        """Publish the next message."""
        key = str(self._n).encode()
        body = self._body(self._n)
        self._n += 1
        self._sent_at[key] = time.perf_counter()
        self._publish(body, key)
        self._fleet.tally.sent += 1

    def _publish(self, body: bytes, key: bytes) -> None:
        publish = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        publish.CorrelationData = key
        self.client.publish(self._topic, body, qos=1, properties=publish)

    def _answered(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        key = getattr(message.properties, "CorrelationData", None)
        if key == PROBE:
            self.heard = True
            return
        began = self._sent_at.pop(bytes(key), None) if key else None
        if began is None:
            return
        tally = self._fleet.tally
        answer = orjson.loads(message.payload)
        tally.acked += 1
        if answer.get("status") == "stored":
            tally.stored += answer["stored"]
            tally.latencies.append(time.perf_counter() - began)
        else:
            tally.refused += 1
        if self._fleet.sending:
            self.send()


class Fleet:
    """Devices connected to one broker, all served by one selector on the calling thread."""

    def __init__(
        self,
        port: int,
        identities: Sequence[dict[str, Any]],
        *,
        body: Callable[[int], bytes],
        probe: bytes,
        window: int,
    ) -> None:
        share_property_tables()  # as the ingest worker does: the fleet pays for properties too
        self.tally = Tally()
        self.sending = False
        self._port = port
        self._selector = selectors.DefaultSelector()
        self._dirty: set[paho.Client] = set()
        self._writing: set[paho.Client] = set()
        self.devices = [Device(self, i, body=body, probe=probe, window=window) for i in identities]
        self._by_client = {device.client: device for device in self.devices}

    def want_write(self, client: paho.Client, _userdata: Any, _sock: Any) -> None:
        """paho has bytes to send for `client`: write them after this round of reads."""
        self._dirty.add(client)

    def connect(self) -> None:
        """Connect every device; answers are read by the pump."""
        for device in self.devices:
            device.client.connect("127.0.0.1", self._port, keepalive=60)
            sock = device.client.socket()
            assert sock is not None  # noqa: S101  (connect raised otherwise)
            self._selector.register(sock, selectors.EVENT_READ, device.client)

    def probe(self, timeout: float) -> None:
        """Probe every device until each has been answered once."""

        def all_heard() -> bool:
            now = time.monotonic()
            waiting = False
            for device in self.devices:
                if not device.heard:
                    waiting = True
                    if device.client.is_connected() and now - device.probed_at > (
                        PROBE_EVERY_SECONDS
                    ):
                        device.probe(now)
            return not waiting

        self.pump(all_heard, timeout)

    def drive(self, seconds: float, *, drain_seconds: float = 30.0) -> float:
        """Send back to back for `seconds`, then wait for what is in flight; return the time
        from the first message to the last answer."""
        self.sending = True
        started = time.perf_counter()
        deadline = started + seconds
        for device in self.devices:
            device.fill()

        def over() -> bool:
            if self.sending and time.perf_counter() >= deadline:
                self.sending = False
            return not self.sending and not any(d.in_flight for d in self.devices)

        try:
            self.pump(over, seconds + drain_seconds)
        except TimeoutError:
            pass  # what is still unanswered is reported as sent and not acknowledged
        return time.perf_counter() - started

    def pump(self, done: Callable[[], bool], timeout: float) -> None:
        """Read, write and keep the connections alive until `done()`; raise on timeout."""
        end = time.monotonic() + timeout
        next_misc = 0.0
        while not done():
            now = time.monotonic()
            if now > end:
                raise TimeoutError
            if now >= next_misc:
                for client in self._by_client:
                    client.loop_misc()
                next_misc = now + MISC_EVERY_SECONDS
            for key, mask in self._selector.select(0.05):
                client = key.data
                if mask & selectors.EVENT_READ:
                    client.loop_read()
                if mask & selectors.EVENT_WRITE:
                    self._dirty.add(client)
            self._flush()

    def _flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for client in dirty:
            client.loop_write()
            sock = client.socket()
            if sock is None:
                continue
            # A full socket buffer: let the selector say when it can take the rest.
            if client.want_write() != (client in self._writing):
                if client.want_write():
                    self._writing.add(client)
                    events = selectors.EVENT_READ | selectors.EVENT_WRITE
                else:
                    self._writing.discard(client)
                    events = selectors.EVENT_READ
                self._selector.modify(sock, events, client)

    def close(self) -> None:
        """Disconnect every device."""
        for client in self._by_client:
            client.disconnect()
            client.loop_write()
        self._selector.close()


def instant_body(
    start: dt.datetime, measurements: dict[str, float], instants: int
) -> Callable[[int], bytes]:
    """Build message `n`: `instants` consecutive instants 1 ms apart, from `start`.

    One instant is the HTTP single-reading body; several are a batch, as a monitor sends when it
    publishes a few seconds of its 1 Hz vitals at once.
    """
    base = start.timestamp()

    def body(n: int) -> bytes:
        first = base + n * instants * 0.001
        if instants == 1:
            stamp = dt.datetime.fromtimestamp(first, dt.UTC)
            return orjson.dumps({"timestamp": stamp, "measurements": measurements})
        return orjson.dumps(
            {
                "readings": [
                    {
                        "timestamp": dt.datetime.fromtimestamp(first + i * 0.001, dt.UTC),
                        "measurements": measurements,
                    }
                    for i in range(instants)
                ]
            }
        )

    return body
