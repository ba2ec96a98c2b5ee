"""Wire models of the reports context: what is asked for, and the report with its figures."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Scope(StrEnum):
    """Whose day a report describes."""

    ORGANISATION = "organisation"
    WARD = "ward"
    PATIENT = "patient"


class Trigger(StrEnum):
    """Why a report was made."""

    SCHEDULED = "scheduled"
    ON_DEMAND = "on_demand"


class FileFormat(StrEnum):
    """The files every report is stored as."""

    PDF = "pdf"
    CSV = "csv"
    FHIR = "fhir"


class ReportCreate(BaseModel):
    """Make a report of one UTC day now."""

    model_config = ConfigDict(extra="forbid")

    scope: Scope
    ward_id: str | None = Field(default=None, max_length=36)
    """The ward, for a ward report (and nothing else)."""
    patient_id: str | None = Field(default=None, max_length=64)
    """The patient, for a patient report (and nothing else)."""
    day: dt.date
    """The UTC day to report; today's report covers what is stored so far."""


class ReportQuery(BaseModel):
    """Filters and paging of a report listing."""

    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=200)
    """Where the previous page ended."""
    scope: Scope | None = None
    ward_id: str | None = Field(default=None, max_length=36)
    patient_id: str | None = Field(default=None, max_length=64)


class TrendPoint(BaseModel):
    """One bucket of a downsampled series, for a chart."""

    at: dt.datetime
    """Start of the bucket."""
    mean: float
    low: float
    high: float
    count: int


class VitalSummary(BaseModel):
    """One measurement type over the day, across the report's patients."""

    type: str
    display: str
    unit: str
    """UCUM."""
    loinc: str
    count: int
    min: float
    max: float
    mean: float
    reference_low: float | None
    reference_high: float | None
    time_in_range_percent: float | None
    """Share of the monitored minutes whose mean lies within the reference range; None for a
    type without one."""
    trend: list[TrendPoint]


class News2Summary(BaseModel):
    """NEWS2 scores over the day."""

    count: int
    patients: int
    """Patients with at least one score."""
    mean: float | None
    max: int | None
    medium_risk_count: int
    """Scores of 5 or 6 (urgent response)."""
    high_risk_count: int
    """Scores of 7 or more (emergency response)."""
    trend: list[TrendPoint]


class AlarmSummary(BaseModel):
    """Alarms raised over the day and how they were answered."""

    raised: int
    by_priority: dict[str, int]
    acknowledged: int
    median_seconds_to_acknowledge: float | None
    max_seconds_to_acknowledge: float | None
    escalated: int
    """Alarms escalated at least once."""
    escalations: int
    """Escalation steps taken, in all."""


class DataQuality(BaseModel):
    """What the data-quality gate refused over the day (kept in quarantine)."""

    rejected: int
    by_item: dict[str, int]
    """By the measurement type refused, or the part of the message ("body")."""


class CampaignSummary(BaseModel):
    """A firmware rollout campaign that ran on the day, as it stood when the report was made."""

    name: str
    status: str
    wave: str
    """The wave reached, counted from 1, of how many: `2/4`."""
    targets: dict[str, int]
    """Devices by the state of their update."""


class DeviceSummary(BaseModel):
    """The devices of the report's patients (every device, for an organisation), as they were
    when the report was made, and the organisation's firmware campaigns of the day."""

    devices: int
    by_status: dict[str, int]
    firmware: dict[str, int]
    """Devices by firmware version ("unknown" where none was reported)."""
    campaigns: list[CampaignSummary]
    """In an organisation's report only: a campaign is the whole fleet's, not a ward's."""


class ReportSummary(BaseModel):
    """The figures of a report: its PDF, CSV and FHIR Bundle say the same."""

    start: dt.datetime
    end: dt.datetime
    patients: int
    """Patients with readings in the day."""
    vitals: list[VitalSummary]
    news2: News2Summary
    alarms: AlarmSummary
    data_quality: DataQuality
    devices: DeviceSummary


class Downloads(BaseModel):
    """Signed links to the report's files; they stop working after a while."""

    pdf: str
    csv: str
    fhir: str
    expires_at: dt.datetime


class ReportRead(BaseModel):
    """A report, its figures and where to download it."""

    id: str
    organisation_id: str
    scope: Scope
    ward_id: str | None
    patient_id: str | None
    day: dt.date
    trigger: Trigger
    generated_at: dt.datetime
    summary: ReportSummary
    downloads: Downloads


class ReportPage(BaseModel):
    """Reports, newest first."""

    items: list[ReportRead]
    next_cursor: str | None


class DailyRun(BaseModel):
    """What one daily run made."""

    days: list[dt.date]
    made: int
    """Reports made; those another run had made already are not counted."""
