"""Events the analytics context publishes."""

from __future__ import annotations

import datetime as dt

from medcloud.platform.events import Event


class AlertRaised(Event):
    """A rule fired on a patient's reading."""

    routing_key = "alert.raised"

    alert_id: str
    device_id: str
    patient_id: str | None
    measurement: str
    value: float
    rule: str
    threshold: float
    severity: str
    reading_timestamp: dt.datetime
