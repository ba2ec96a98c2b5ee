"""Devices: the registry, credentials, liveness, firmware images and rollout campaigns."""

from __future__ import annotations

from pathlib import Path

from medcloud.devices.api import router
from medcloud.devices.handlers import SUBSCRIPTIONS
from medcloud.devices.status import monitor_devices, refresh_active_devices
from medcloud.platform.context import Context

CONTEXT = Context(
    name="devices",
    router=router,
    subscriptions=SUBSCRIPTIONS,
    migrations=Path(__file__).parent / "migrations",
    background=(refresh_active_devices, monitor_devices),
)
