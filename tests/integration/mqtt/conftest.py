"""The app with the MQTT transport on, against a Mosquitto of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from medcloud.config import Settings
from medcloud.platform.metrics import Metrics
from tests.support.client import Api, eventually, running
from tests.support.mosquitto import Broker, running_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A Mosquitto with dynamic security, on a free port, stopped after the test."""
    with running_broker(tmp_path / "mosquitto") as started:
        yield started


@pytest.fixture
def mqtt_settings(settings: Settings, broker: Broker) -> Settings:
    """The test's settings with MQTT on: the subscriber runs, registration provisions devices."""
    return settings.model_copy(update={"mqtt": broker.settings()})


async def subscribed(api: Api) -> bool:
    """Tell whether the app's MQTT subscriber is connected and subscribed."""
    metrics: Metrics = api.app.state.runtime.metrics
    return metrics.registry.get_sample_value("mqtt_subscriber_connected") == 1


@pytest.fixture
async def api(mqtt_settings: Settings, broker: Broker) -> AsyncIterator[Api]:
    """The app, once its subscriber holds the shared subscription (the broker drops what is
    published before any subscriber exists)."""
    async with running(mqtt_settings) as client:
        assert await eventually(lambda: subscribed(client), timeout=30), broker.log()
        yield client
