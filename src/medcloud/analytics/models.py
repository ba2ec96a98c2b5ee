"""Tables owned by the analytics context."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Float, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from medcloud.platform.db import Base, UTCDateTime

CLINICAL = "clinical"
"""An alert a rule raised on a patient's reading."""
TECHNICAL = "technical"
"""A device's technical alert (offline while in use, low battery), from the devices context."""


class Alert(Base):
    """An alert clinicians act on: a rule fired on a reading, or a device needs attention.

    A clinical alert is unique on (device, measurement, timestamp, rule). A technical alert keeps
    the id of the devices context's alert it mirrors, its kind as `rule`, and no reading; only
    technical alerts are resolved (when the device's condition is over).
    """

    __tablename__ = "alert"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    device_id: Mapped[str] = mapped_column(String(36))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(10), default=CLINICAL, server_default=CLINICAL)
    measurement: Mapped[str | None] = mapped_column(String(40))
    value: Mapped[float | None] = mapped_column(Float)
    rule: Mapped[str] = mapped_column(String(60))
    threshold: Mapped[float | None] = mapped_column(Float)
    severity: Mapped[str] = mapped_column(String(10))
    message: Mapped[str | None] = mapped_column(String(200))
    reading_timestamp: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    raised_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("device_id", "measurement", "reading_timestamp", "rule"),
        Index("ix_alert_organisation_id_raised_at", "organisation_id", "raised_at"),
    )
