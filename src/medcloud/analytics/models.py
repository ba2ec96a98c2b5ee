"""Tables owned by the analytics context."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Float, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from medcloud.platform.db import Base, UTCDateTime


class Alert(Base):
    """A rule fired on a reading. (device, measurement, timestamp, rule) is unique."""

    __tablename__ = "alert"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    device_id: Mapped[str] = mapped_column(String(36))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    measurement: Mapped[str] = mapped_column(String(40))
    value: Mapped[float] = mapped_column(Float)
    rule: Mapped[str] = mapped_column(String(60))
    threshold: Mapped[float] = mapped_column(Float)
    severity: Mapped[str] = mapped_column(String(10))
    reading_timestamp: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    raised_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("device_id", "measurement", "reading_timestamp", "rule"),
        Index("ix_alert_organisation_id_raised_at", "organisation_id", "raised_at"),
    )
