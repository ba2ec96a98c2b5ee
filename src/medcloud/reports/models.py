"""Tables owned by the reports context: the reports made, and how far the daily run has got."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Date, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from medcloud.platform.db import Base, UTCDateTime


class Report(Base):
    """One report of one UTC day: its figures here, its files in the object store."""

    __tablename__ = "report"
    __table_args__ = (Index("ix_report_organisation_generated", "organisation_id", "generated_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    scope: Mapped[str] = mapped_column(String(12))
    ward_id: Mapped[str | None] = mapped_column(String(36))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    day: Mapped[dt.date] = mapped_column(Date)
    trigger: Mapped[str] = mapped_column(String(12))
    generated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    requested_by: Mapped[str | None] = mapped_column(String(36))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    daily_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    """(organisation, scope, subject, day) of a scheduled report: the last guard that keeps a
    day's scheduled report single however many runs race for it. None on demand."""


class ReportWatermark(Base):
    """The last day the daily run completed, so a run after downtime makes up the days missed."""

    __tablename__ = "report_watermark"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
