"""Tables owned by the ingest context."""

from __future__ import annotations

import datetime as dt
import functools

import numpy
from sqlalchemy import (
    REAL,
    BigInteger,
    Dialect,
    Float,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from medcloud.platform.db import Base, UTCDateTime

BigId = BigInteger().with_variant(Integer(), "sqlite")


class Real(TypeDecorator[float]):
    """A single-precision value (`real`: 4 bytes), read back as the shortest decimal that is the
    same float32, so 38.1 stored reads 38.1 and not 38.09999847.

    Vital signs carry three or four significant digits and float32 holds seven; `double` would
    cost four more bytes on every reading (eight with alignment). Values are rounded to float32
    on the way in on every dialect, so SQLite (whose REAL is a double) stores what PostgreSQL
    does.
    """

    impl = REAL
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: Dialect) -> float | None:
        del dialect
        return None if value is None else as_stored(value)

    def process_result_value(self, value: float | None, dialect: Dialect) -> float | None:
        del dialect
        return None if value is None else as_stored(value)


def as_stored(value: float) -> float:
    """The value a reading of `value` reads back as: the shortest decimal of its float32."""
    value = float(value)
    if value.is_integer() and abs(value) < 2**24:  # most vitals; float32 holds these exactly
        return value
    return _shortest(value)


@functools.lru_cache(maxsize=65_536)
def _shortest(value: float) -> float:
    # A chart or a page turns thousands of values, mostly the same few dozen, and numpy's
    # shortest repr of a float32 costs microseconds each.
    return float(str(numpy.float32(value)))


class ReadingSeries(Base):
    """One device's readings of one type for one patient (`patient_key`, '' for none), in one
    organisation: what each stored reading names with a 4-byte id instead of repeating three
    identifiers and a type on every row.

    A series is made the first time a reading of it arrives (`ingest/series.py`) and is never
    removed; it is a few dozen bytes per device, type and patient.
    """

    __tablename__ = "reading_series"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(40))
    patient_key: Mapped[str] = mapped_column(String(64))
    organisation_id: Mapped[str] = mapped_column(String(36))

    __table_args__ = (
        UniqueConstraint("device_id", "type", "patient_key", "organisation_id"),
        Index("ix_reading_series_patient_key_type", "patient_key", "type"),
    )

    @property
    def patient_id(self) -> str | None:
        """The patient, None for readings of no patient."""
        return self.patient_key or None


class Reading(Base):
    """One stored measurement: 16 bytes of data and the primary key, nothing else.

    (series, timestamp) is unique, so every retry is safe, and it is the only index: every read
    names its series first (a device's, or a patient's) and walks its time range in order. The
    unit is the catalogue's, so it is not stored. `drift_seconds` is NULL for a reading that
    arrived in time and costs nothing then (PostgreSQL's null bitmap fits in the row header's
    spare byte); for one whose timestamp was far behind its receipt, it says how far.

    On PostgreSQL the table is range-partitioned by month on `timestamp`.
    """

    __tablename__ = "reading"

    series_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    timestamp: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    value: Mapped[float] = mapped_column(Real())
    drift_seconds: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = {"sqlite_with_rowid": False}


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


ROLLUP_WIDTHS = (60, 300, 3600)
"""Seconds a rollup spans: a minute, five minutes and an hour, each dividing the next."""


class ReadingRollup(Base):
    """Minimum, maximum, sum and count of one series' readings over a minute or an hour: what a
    chart of a long range reads instead of every reading.

    Kept in step by the writer in the transaction that stores the readings, from the readings
    that were new, so a retry counts once and a late or backfilled reading joins its bucket.
    """

    __tablename__ = "reading_rollup"

    series_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    width: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket_start: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    low: Mapped[float] = mapped_column(Real())
    high: Mapped[float] = mapped_column(Real())
    total: Mapped[float] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)

    __table_args__ = {"sqlite_with_rowid": False}
