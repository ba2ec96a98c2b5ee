"""Devices: the registry, credentials, liveness, firmware images and rollout campaigns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medcloud.config import Settings
from medcloud.devices.api import FIRMWARE_CONTENT, router
from medcloud.devices.handlers import SUBSCRIPTIONS
from medcloud.devices.status import monitor_devices, refresh_active_devices
from medcloud.platform.context import Context


def large_bodies(settings: Settings) -> Sequence[tuple[str, int]]:
    """Firmware images, up to their own limit."""
    return [(FIRMWARE_CONTENT, settings.devices.firmware_max_bytes)]


CONTEXT = Context(
    name="devices",
    router=router,
    subscriptions=SUBSCRIPTIONS,
    migrations=Path(__file__).parent / "migrations",
    background=(refresh_active_devices,),
    singletons=(monitor_devices,),
    large_bodies=large_bodies,
)
