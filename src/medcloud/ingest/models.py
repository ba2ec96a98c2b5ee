"""Tables owned by the ingest context."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from medcloud.platform.db import Base, UTCDateTime

BigId = BigInteger().with_variant(Integer(), "sqlite")


class Reading(Base):
    """One stored measurement. (device, type, timestamp) is unique, so every retry is safe.

    On PostgreSQL the table is range-partitioned by month on `timestamp` and its primary key is
    (id, timestamp), since a partitioned table's keys must hold the partition column; `id` alone
    stays unique through its sequence, which is all the mapping and the keyset cursor rely on.
    """

    __tablename__ = "reading"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    device_id: Mapped[str] = mapped_column(String(36))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(40))
    value: Mapped[float] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(20))
    timestamp: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    clock_drift: Mapped[bool] = mapped_column(Boolean, server_default=false(), default=False)

    __table_args__ = (
        UniqueConstraint("device_id", "type", "timestamp"),
        Index("ix_reading_device_id_timestamp", "device_id", "timestamp"),
        Index("ix_reading_patient_id_type_timestamp", "patient_id", "type", "timestamp"),
        Index("ix_reading_patient_id_timestamp", "patient_id", "timestamp"),
    )


class QuarantinedReading(Base):
    """A reading the data-quality gate refused, kept with the reason so it is never lost."""

    __tablename__ = "quarantined_reading"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    device_id: Mapped[str] = mapped_column(String(36))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    transport: Mapped[str] = mapped_column(String(20))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    field: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(500))
    payload: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        Index("ix_quarantined_reading_organisation_id_id", "organisation_id", "id"),
        Index("ix_quarantined_reading_device_id_id", "device_id", "id"),
    )


ROLLUP_WIDTHS = (60, 3600)
"""Seconds a rollup spans: a minute and an hour."""


class ReadingRollup(Base):
    """Minimum, maximum, sum and count of one device's readings of one type over a minute or an
    hour, per patient (`patient_key`, '' for readings of no patient): what a chart of a long
    range reads instead of every reading.

    Kept in step by the writer in the transaction that stores the readings, from the readings
    that were new, so a retry counts once and a late or backfilled reading joins its bucket.
    """

    __tablename__ = "reading_rollup"

    device_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    width: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket_start: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    type: Mapped[str] = mapped_column(String(40), primary_key=True)
    patient_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    low: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    total: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)
