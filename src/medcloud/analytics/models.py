"""Tables owned by the analytics context."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from medcloud.platform.db import Base, UTCDateTime

CLINICAL = "clinical"
"""A physiological alarm: a rule fired on a patient's readings."""
TECHNICAL = "technical"
"""A technical alarm: a device needs attention (offline while in use, low battery), missing
data, or nobody can be told."""

OPEN_STATES = ("active", "acknowledged")


class Alert(Base):
    """An alarm (IEC 60601-1-8): one open alarm per subject and condition, updated in place.

    The subject is the patient when the readings had one, else the device (`subject`). A
    physiological alarm names the rule and its version that raised it and the values that did; a
    technical alarm mirrored from the devices context keeps that context's id and its kind as
    `rule`. `severity` holds the priority (high, medium, low).
    """

    __tablename__ = "alert"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    device_id: Mapped[str] = mapped_column(String(36))
    patient_id: Mapped[str | None] = mapped_column(String(64))
    ward_id: Mapped[str | None] = mapped_column(String(36))
    subject: Mapped[str] = mapped_column(String(80), default="", server_default="")
    source: Mapped[str] = mapped_column(String(10), default=CLINICAL, server_default=CLINICAL)
    state: Mapped[str] = mapped_column(String(14), default="active", server_default="active")
    measurement: Mapped[str | None] = mapped_column(String(40))
    value: Mapped[float | None] = mapped_column(Float)
    last_value: Mapped[float | None] = mapped_column(Float)
    worst_value: Mapped[float | None] = mapped_column(Float)
    rule: Mapped[str] = mapped_column(String(60))
    rule_id: Mapped[str | None] = mapped_column(String(36))
    rule_version: Mapped[int | None] = mapped_column(Integer)
    threshold: Mapped[float | None] = mapped_column(Float)
    severity: Mapped[str] = mapped_column(String(10))
    latching: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    condition_active: Mapped[bool] = mapped_column(
        Boolean, default=True, server_default=text("true")
    )
    message: Mapped[str | None] = mapped_column(String(200))
    model_version: Mapped[str | None] = mapped_column(String(40))
    reading_timestamp: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_reading_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    received_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    raised_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(36))
    silenced_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    silenced_by: Mapped[str | None] = mapped_column(String(36))
    silence_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    escalation_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    @property
    def priority(self) -> str:
        """Name the alarm's priority (stored as `severity`, the first alert list's word)."""
        return self.severity

    __table_args__ = (
        Index("ix_alert_organisation_id_raised_at", "organisation_id", "raised_at"),
        # One open alarm per subject and condition: a second evaluation that races the first
        # collides here instead of raising a duplicate.
        Index(
            "uq_alert_open_subject_rule",
            "subject",
            "rule",
            unique=True,
            sqlite_where=text("state IN ('active', 'acknowledged') AND subject <> ''"),
            postgresql_where=text("state IN ('active', 'acknowledged') AND subject <> ''"),
        ),
    )


class AlarmCondition(Base):
    """Where a condition stands for one subject and rule while no alarm is open yet.

    A threshold breached since `onset_at` raises its alarm once it has lasted the rule's delay;
    a reading back in range deletes the row. Rate-of-change rules keep their reference point
    here too, and `evaluated_to` remembers the last reading of an alarm that ended, so that a
    reading of that episode delivered late raises no second alarm.
    """

    __tablename__ = "alarm_condition"

    subject: Mapped[str] = mapped_column(String(80), primary_key=True)
    rule: Mapped[str] = mapped_column(String(60), primary_key=True)
    onset_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    reference_value: Mapped[float | None] = mapped_column(Float)
    reference_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    evaluated_to: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class AlarmRule(Base):
    """A configured rule: an override of the defaults for an organisation, a ward or a patient.

    The narrowest scope with a rule of the same key wins (patient, ward, organisation, default).
    Every change adds one to `version`; alarms name the version that raised them.
    """

    __tablename__ = "alarm_rule"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    scope: Mapped[str] = mapped_column(String(12))
    scope_id: Mapped[str] = mapped_column(String(64), default="", server_default="")
    key: Mapped[str] = mapped_column(String(60))
    kind: Mapped[str] = mapped_column(String(20))
    measurement: Mapped[str | None] = mapped_column(String(40))
    priority: Mapped[str] = mapped_column(String(10))
    low: Mapped[float | None] = mapped_column(Float)
    high: Mapped[float | None] = mapped_column(Float)
    hysteresis: Mapped[float] = mapped_column(Float, default=0.0)
    delay_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    window_seconds: Mapped[float | None] = mapped_column(Float)
    latching: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str | None] = mapped_column(String(36))

    __table_args__ = (UniqueConstraint("organisation_id", "scope", "scope_id", "key"),)


class VitalLatest(Base):
    """A patient's newest live value of each measurement type, for NEWS2 and missing data."""

    __tablename__ = "vital_latest"

    patient_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    measurement: Mapped[str] = mapped_column(String(40), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    device_id: Mapped[str] = mapped_column(String(36))
    value: Mapped[float] = mapped_column(Float)
    measured_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class PatientScoring(Base):
    """How NEWS2 scores one patient: SpO2 scale 2 is chosen by a clinician, never inferred."""

    __tablename__ = "patient_scoring"

    patient_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    spo2_scale: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str | None] = mapped_column(String(36))


class News2Score(Base):
    """A NEWS2 score derived from a patient's vitals: the derived reading charts show."""

    __tablename__ = "news2_score"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    organisation_id: Mapped[str] = mapped_column(String(36))
    patient_id: Mapped[str] = mapped_column(String(64))
    scored_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    score: Mapped[int] = mapped_column(Integer)
    risk: Mapped[str] = mapped_column(String(12))
    components: Mapped[str] = mapped_column(String(400))
    spo2_scale: Mapped[int] = mapped_column(Integer)
    live: Mapped[bool] = mapped_column(Boolean)

    __table_args__ = (
        UniqueConstraint("patient_id", "scored_at"),
        Index("ix_news2_score_patient_id_scored_at", "patient_id", "scored_at"),
    )


class AnomalyModel(Base):
    """The model registry: every trained anomaly model, its evaluation, and which one scores."""

    __tablename__ = "anomaly_model"

    version: Mapped[str] = mapped_column(String(40), primary_key=True)
    organisation_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    trained_from: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    trained_to: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    trained_windows: Mapped[int] = mapped_column(Integer)
    features: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[float] = mapped_column(Float)
    precision: Mapped[float] = mapped_column(Float)
    recall: Mapped[float] = mapped_column(Float)
    onnx: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="registered")
    error: Mapped[str | None] = mapped_column(String(400))
