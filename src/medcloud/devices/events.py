"""Events the devices context publishes."""

from __future__ import annotations

from medcloud.platform.events import Event


class DeviceRegistered(Event):
    """A device joined an organisation's registry."""

    routing_key = "device.registered"

    device_id: str
    serial_number: str
    model: str
    manufacturer: str
    patient_id: str | None
