"""Wire models of the analytics context."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from medcloud.analytics.alarms import AlarmState
from medcloud.analytics.news2 import Consciousness, Risk
from medcloud.analytics.rules import KEY, MAX_DELAY_SECONDS, Priority, RuleKind, Scope
from medcloud.platform.types import INTEGER, StrictNumber


class AlertSource(StrEnum):
    """Where an alarm comes from: a rule on readings (physiological), or a device or the data
    flow needing attention (technical)."""

    CLINICAL = "clinical"
    TECHNICAL = "technical"


class AlertRead(BaseModel):
    """An alarm as clinicians see it.

    `severity` repeats `priority` under the name the first alert list used. A technical alarm
    (offline while in use, low battery, missing data) names its kind in `rule` and explains
    itself in `message`.
    """

    model_config = ConfigDict(from_attributes=True)

    id: str
    source: AlertSource
    state: AlarmState
    priority: Priority
    severity: str
    device_id: str
    patient_id: str | None
    ward_id: str | None
    rule: str
    rule_id: str | None
    rule_version: int | None
    measurement: str | None
    value: float | None
    """The value that raised the alarm."""
    last_value: float | None
    worst_value: float | None
    threshold: float | None
    latching: bool
    condition_active: bool
    """False when a latching alarm's condition is over and it waits for acknowledgement."""
    message: str | None
    model_version: str | None
    reading_timestamp: dt.datetime | None
    last_reading_at: dt.datetime | None
    received_at: dt.datetime | None
    """When the reading that raised the alarm arrived (alarm latency is measured from here)."""
    raised_at: dt.datetime
    updated_at: dt.datetime | None
    acknowledged_at: dt.datetime | None
    acknowledged_by: str | None
    silenced_until: dt.datetime | None
    """While in the future, the alarm's audible signal is paused (nothing else changes)."""
    resolved_at: dt.datetime | None


class AlertPage(BaseModel):
    """Alarms, newest first."""

    items: list[AlertRead]
    next_cursor: str | None


class SilenceIn(BaseModel):
    """Pause one alarm's audible signal."""

    model_config = ConfigDict(extra="forbid")

    seconds: Annotated[StrictNumber, Field(gt=0, le=3600)]
    """How long; no more than the configured maximum (`alerts.max_silence_seconds`)."""


class RuleIn(BaseModel):
    """An alarm rule for an organisation, a ward or a patient (overriding broader ones by key)."""

    model_config = ConfigDict(extra="forbid")

    key: Annotated[str, Field(min_length=1, max_length=40, pattern=KEY.pattern)]
    """Rules of the same key override each other: patient over ward over organisation over
    the defaults."""
    kind: RuleKind
    scope: Scope = Scope.ORGANISATION
    scope_id: Annotated[str, Field(max_length=64)] = ""
    """The ward's or patient's id; empty for the organisation."""
    measurement: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    priority: Priority
    low: StrictNumber | None = None
    high: StrictNumber | None = None
    hysteresis: Annotated[StrictNumber, Field(ge=0)] = 0.0
    delay_seconds: Annotated[StrictNumber, Field(ge=0, le=MAX_DELAY_SECONDS)] = 0.0
    """At most 10 s for heart rate, 300 s otherwise."""
    window_seconds: Annotated[StrictNumber, Field(ge=0, le=86_400)] | None = None
    latching: StrictBool = False
    enabled: StrictBool = True


class RuleRead(BaseModel):
    """A rule, configured or default (a default has no id and version 0)."""

    model_config = ConfigDict(from_attributes=True)

    id: str | None
    key: str
    kind: RuleKind
    scope: Scope
    scope_id: str
    measurement: str | None
    priority: Priority
    low: float | None
    high: float | None
    hysteresis: float
    delay_seconds: float
    window_seconds: float | None
    latching: bool
    enabled: bool
    version: int


class RulePage(BaseModel):
    """Configured rules, and the defaults they override."""

    items: list[RuleRead]
    defaults: list[RuleRead]


class News2In(BaseModel):
    """The observations NEWS2 scores."""

    model_config = ConfigDict(extra="forbid")

    respiratory_rate: Annotated[StrictNumber, Field(ge=0, le=120)]
    spo2: Annotated[StrictNumber, Field(ge=0, le=100)]
    spo2_scale: Annotated[int, Field(ge=1, le=2), INTEGER] = 1
    supplemental_oxygen: StrictBool
    systolic_bp: Annotated[StrictNumber, Field(ge=20, le=300)]
    pulse: Annotated[StrictNumber, Field(ge=0, le=350)]
    consciousness: Consciousness
    temperature: Annotated[StrictNumber, Field(ge=10, le=46)]


class News2Read(BaseModel):
    """A NEWS2 score, its risk band and the score of each parameter."""

    score: int
    risk: Risk
    components: dict[str, int]


class News2ScoreRead(News2Read):
    """A patient's stored NEWS2 score."""

    scored_at: dt.datetime
    spo2_scale: int
    live: bool


class News2History(BaseModel):
    """A patient's NEWS2 scores, newest first."""

    patient_id: str
    spo2_scale: int
    items: list[News2ScoreRead]


class ScoringIn(BaseModel):
    """How NEWS2 scores a patient: scale 2 only for confirmed hypercapnic respiratory failure."""

    model_config = ConfigDict(extra="forbid")

    spo2_scale: Annotated[int, Field(ge=1, le=2), INTEGER]


class ForecastPointRead(BaseModel):
    """One step of a forecast: the expected value and its prediction interval."""

    at: dt.datetime
    mean: float
    lower: float
    upper: float


class ForecastRead(BaseModel):
    """A short-horizon forecast of one vital sign."""

    patient_id: str
    type: str
    unit: str
    method: str
    level: float
    step_seconds: float
    history_points: int
    points: list[ForecastPointRead]
    crossing: ForecastPointRead | None
    """The first point whose expected value leaves the patient's alarm limits, if any."""


class FatigueRow(BaseModel):
    """Alarm-fatigue figures of one ward and rule."""

    ward_id: str | None
    rule: str
    alarms: int
    patient_days: float
    alarms_per_patient_day: float
    acknowledged: int
    time_to_acknowledge_p50_seconds: float | None
    time_to_acknowledge_p90_seconds: float | None
    silenced_share: float
    escalated_share: float


class FatigueRead(BaseModel):
    """Alarm-fatigue figures over a period, per ward and rule, and in total."""

    start: dt.datetime
    end: dt.datetime
    total: FatigueRow
    rows: list[FatigueRow]


class ModelRead(BaseModel):
    """A registered anomaly model."""

    model_config = ConfigDict(from_attributes=True)

    version: str
    created_at: dt.datetime
    trained_from: dt.datetime | None
    trained_to: dt.datetime | None
    trained_windows: int
    features: int
    threshold: float
    precision: float
    recall: float
    active: bool
    status: str
    error: str | None
