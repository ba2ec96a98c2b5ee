"""Wire models of the analytics context."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel


class AlertRead(BaseModel):
    """An alert as clinicians see it."""

    id: str
    device_id: str
    patient_id: str | None
    measurement: str
    value: float
    rule: str
    threshold: float
    severity: str
    reading_timestamp: dt.datetime
    raised_at: dt.datetime


class AlertPage(BaseModel):
    """Alerts, newest first."""

    items: list[AlertRead]
    next_cursor: str | None
