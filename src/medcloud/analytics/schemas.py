"""Wire models of the analytics context."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import BaseModel


class AlertSource(StrEnum):
    """Where an alert comes from: a rule on a reading, or a device that needs attention."""

    CLINICAL = "clinical"
    TECHNICAL = "technical"


class AlertRead(BaseModel):
    """An alert as clinicians see it.

    A technical alert (offline while in use, low battery) names its kind in `rule`, explains
    itself in `message`, has no reading, and is resolved once the device's condition is over.
    """

    id: str
    source: AlertSource
    device_id: str
    patient_id: str | None
    measurement: str | None
    value: float | None
    rule: str
    threshold: float | None
    severity: str
    message: str | None
    reading_timestamp: dt.datetime | None
    raised_at: dt.datetime
    resolved_at: dt.datetime | None


class AlertPage(BaseModel):
    """Alerts, newest first."""

    items: list[AlertRead]
    next_cursor: str | None
