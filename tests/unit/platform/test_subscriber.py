"""The shared subscriber without a broker: answers before acknowledgements, retries, give-ups."""

from __future__ import annotations

import aiomqtt

from medcloud.config import MqttSettings
from medcloud.platform.errors import Unavailable
from medcloud.platform.metrics import Metrics
from medcloud.platform.subscriber import Answer, Handled, SharedSubscriber, _Link


class FakePaho:
    """Records, in order, what the subscriber sends on a connection (`Paho`'s interface)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def acknowledge(self, message: aiomqtt.Message) -> None:
        self.sent.append(f"puback {message.mid}")

    def publish(self, topic: str, *args: object, **kwargs: object) -> None:  # noqa: ARG002
        self.sent.append(f"publish {topic}")


def message(mid: int) -> aiomqtt.Message:
    return aiomqtt.Message(f"devices/d{mid}/telemetry", b"{}", 1, False, mid, None)


def subscriber(handle: object, metrics: Metrics) -> SharedSubscriber:
    settings = MqttSettings(url="mqtt://worker:pw@127.0.0.1:1", retry_seconds=0.001)
    return SharedSubscriber(
        settings=settings,
        topic="$share/g/devices/+/telemetry",
        handle=handle,  # type: ignore[arg-type]
        metrics=metrics,
    )


async def test_the_answer_goes_out_before_the_acknowledgement() -> None:
    async def handle(taken: aiomqtt.Message) -> Handled:
        return Handled("stored", Answer(f"devices/d{taken.mid}/ack", b"{}"))

    paho, metrics = FakePaho(), Metrics()
    await subscriber(handle, metrics)._take(_Link(None, paho), message(7))  # type: ignore[arg-type]

    assert paho.sent == ["publish devices/d7/ack", "puback 7"]
    assert metrics.registry.get_sample_value("mqtt_messages_total", {"outcome": "stored"}) == 1


async def test_a_message_the_store_cannot_take_now_is_tried_again_then_acknowledged() -> None:
    calls = 0

    async def handle(_taken: aiomqtt.Message) -> Handled:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Unavailable("backlogged")
        return Handled("stored")

    paho, metrics = FakePaho(), Metrics()
    await subscriber(handle, metrics)._take(_Link(None, paho), message(1))  # type: ignore[arg-type]

    assert calls == 3
    assert paho.sent == ["puback 1"]
    assert metrics.registry.get_sample_value("mqtt_messages_total", {"outcome": "retried"}) == 2


async def test_a_message_on_a_closed_link_is_left_unacknowledged_for_the_next_session() -> None:
    async def handle(_taken: aiomqtt.Message) -> Handled:
        raise Unavailable("backlogged")

    paho, metrics = FakePaho(), Metrics()
    link = _Link(None, paho, open=False)  # type: ignore[arg-type]
    await subscriber(handle, metrics)._take(link, message(1))

    assert paho.sent == []
    assert metrics.registry.get_sample_value("mqtt_messages_total", {"outcome": "abandoned"}) == 1
