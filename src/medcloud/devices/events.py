"""Events the devices context publishes."""

from __future__ import annotations

import datetime as dt

from medcloud.platform.events import Event


class DeviceRegistered(Event):
    """A device joined an organisation's registry."""

    routing_key = "device.registered"

    device_id: str
    serial_number: str
    model: str
    manufacturer: str
    patient_id: str | None


class DeviceStatusChanged(Event):
    """A device went online, offline or out of service."""

    routing_key = "device.status.changed"

    device_id: str
    patient_id: str | None
    previous: str
    status: str
    last_seen_at: dt.datetime | None
    changed_at: dt.datetime


class DeviceAssignmentChanged(Event):
    """A device was attached to a patient, or detached (`patient_id` None), from `at`."""

    routing_key = "device.assignment.changed"

    device_id: str
    patient_id: str | None
    previous_patient_id: str | None
    at: dt.datetime


class DeviceAlertRaised(Event):
    """A technical alert: a device needs a technician (offline while in use, low battery)."""

    routing_key = "device.alert.raised"

    alert_id: str
    device_id: str
    patient_id: str | None
    kind: str
    severity: str
    message: str
    raised_at: dt.datetime


class DeviceAlertResolved(Event):
    """The condition behind a technical alert is over."""

    routing_key = "device.alert.resolved"

    alert_id: str
    device_id: str
    kind: str
    resolved_at: dt.datetime
    # What the raise said, repeated so that a consumer given the resolution first (separate
    # queues keep no order between the two) can still record the whole alert. Optional: events
    # published before these fields existed carry only the four above.
    patient_id: str | None = None
    severity: str | None = None
    message: str | None = None
    raised_at: dt.datetime | None = None


class FirmwareUpdateReported(Event):
    """A device's firmware update moved on (offered, downloading, …, succeeded, failed)."""

    routing_key = "firmware.update.reported"

    campaign_id: str
    device_id: str
    image_id: str
    firmware_version: str
    status: str
    reason: str | None


class RolloutCampaignChanged(Event):
    """A rollout campaign started a wave, paused, resumed, was cancelled or completed."""

    routing_key = "firmware.rollout.changed"

    campaign_id: str
    status: str
    current_wave: int
    reason: str | None
