"""How a report is made, whoever asks: its subject, the facts gathered through other
contexts' published interfaces, its figures, its files in the object store, and its row."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass

from medcloud.config import Settings
from medcloud.platform.audit import AuditRecorded, ServiceActor, audit_record
from medcloud.platform.directory import (
    AlarmFact,
    AlarmHistory,
    CampaignCard,
    CareDirectory,
    DeviceCard,
    DeviceDirectory,
    DeviceQuery,
    PatientDirectory,
    ReadingBucket,
    ReadingHistory,
    ReadingQuery,
    ScoreFact,
)
from medcloud.platform.objects import ObjectStore
from medcloud.platform.runtime import Runtime
from medcloud.platform.security import UserPrincipal
from medcloud.platform.uow import UnitOfWork
from medcloud.reports import figures, links
from medcloud.reports.events import ReportGenerated
from medcloud.reports.exports import ReportFacts, render_csv, render_fhir
from medcloud.reports.models import Report
from medcloud.reports.schemas import FileFormat, ReportSummary, Scope, Trigger

MEDIA_TYPES = {
    FileFormat.PDF: "application/pdf",
    FileFormat.CSV: "text/csv",
    FileFormat.FHIR: "application/fhir+json",
}
EXTENSIONS = {FileFormat.PDF: "pdf", FileFormat.CSV: "csv", FileFormat.FHIR: "json"}
MINUTE = 60
DEVICE_PAGE = 500


@dataclass(frozen=True)
class Sources:
    """What reports read through other contexts' published interfaces, and where files go."""

    readings: ReadingHistory
    patients: PatientDirectory
    care: CareDirectory
    alarms: AlarmHistory
    devices: DeviceDirectory
    objects: ObjectStore
    link_key: bytes
    link_minutes: int


@dataclass(frozen=True)
class Subject:
    """Whose day: an organisation, one of its wards or one of its patients."""

    organisation_id: str
    scope: Scope
    ward_id: str | None = None
    patient_id: str | None = None

    def daily_key(self, day: dt.date) -> str:
        """The key that keeps one scheduled report per subject and day."""
        named = self.ward_id or self.patient_id or ""
        return f"{self.organisation_id}|{self.scope.value}|{named}|{day.isoformat()}"


@dataclass(frozen=True)
class Gathered:
    """What a report's figures are computed from."""

    patients: int
    minutes: dict[str, list[ReadingBucket]]
    alarms: list[AlarmFact]
    scores: list[ScoreFact]
    rejections: dict[str, int]
    devices: list[DeviceCard]
    campaigns: list[CampaignCard]


@dataclass(frozen=True)
class ReportFile:
    """A report's file, ready to send."""

    content: bytes
    media_type: str
    filename: str


def object_key(organisation_id: str, report_id: str, file_format: FileFormat) -> str:
    """Where a report's file lives in the object store."""
    return f"reports/{organisation_id}/{report_id}.{EXTENSIONS[file_format]}"


async def gather(sources: Sources, subject: Subject, day: dt.date) -> Gathered:
    """Read the day's readings, alarms and scores of the subject's patients."""
    start, end = figures.day_bounds(day)
    if subject.scope is Scope.PATIENT:
        assert subject.patient_id is not None  # noqa: S101  (a patient subject names one)
        patient_ids = [subject.patient_id]
    else:
        patient_ids = sorted(await sources.readings.patients(subject.organisation_id, start, end))
        if subject.scope is Scope.WARD:
            # The ward a patient is in now: readings keep no ward of their own.
            wards = await sources.patients.wards(patient_ids)
            patient_ids = [p for p in patient_ids if wards.get(p) == subject.ward_id]
    minutes: dict[str, list[ReadingBucket]] = {}
    monitored = 0
    for patient_id in patient_ids:
        query = ReadingQuery(subject.organisation_id, patient_id=patient_id, start=start, end=end)
        # Per-minute buckets come whole from the chart rollups the writer keeps: a day of
        # readings at 1 Hz is read as 1,440 rows per type, not 86,400.
        found = await sources.readings.buckets(query, bucket_seconds=MINUTE)
        monitored += bool(found)
        for bucket in found:
            minutes.setdefault(bucket.type, []).append(bucket)
    among = None if subject.scope is Scope.ORGANISATION else frozenset(patient_ids)
    alarms = await sources.alarms.alarms(subject.organisation_id, start, end, among)
    scores = await sources.alarms.scores(patient_ids, start, end)
    rejections = await sources.readings.rejections(subject.organisation_id, start, end, among)
    devices = await _devices(sources, subject.organisation_id, among)
    campaigns = (
        await sources.devices.campaigns(subject.organisation_id, start, end)
        if subject.scope is Scope.ORGANISATION
        else []
    )
    return Gathered(monitored, minutes, alarms, scores, rejections, devices, campaigns)


async def _devices(
    sources: Sources, organisation_id: str, patients: frozenset[str] | None
) -> list[DeviceCard]:
    """Every device of the organisation, or those of these patients, page by page."""
    if patients is not None and not patients:
        return []
    found: list[DeviceCard] = []
    after: tuple[dt.datetime, str] | None = None
    while True:
        page = await sources.devices.search(
            organisation_id, DeviceQuery(patients=patients), limit=DEVICE_PAGE, after=after
        )
        found += page
        if len(page) < DEVICE_PAGE:
            return found
        after = (page[-1].created_at, page[-1].id)


def summarise(gathered: Gathered, day: dt.date) -> ReportSummary:
    """Compute the report's figures (CPU work: run it off the event loop)."""
    start, end = figures.day_bounds(day)
    return ReportSummary(
        start=start,
        end=end,
        patients=gathered.patients,
        vitals=[
            figures.vital_summary(measurement, minutes, start, end)
            for measurement, minutes in sorted(gathered.minutes.items())
            if minutes
        ],
        news2=figures.news2_summary(gathered.scores, start, end),
        alarms=figures.alarm_summary(gathered.alarms),
        data_quality=figures.data_quality(gathered.rejections),
        devices=figures.device_summary(gathered.devices, gathered.campaigns),
    )


def render(facts: ReportFacts, summary: ReportSummary) -> dict[FileFormat, bytes]:
    """Render every file of the report (CPU work: run it off the event loop)."""
    # Imported here: matplotlib and reportlab take a second to import, and matplotlib builds a
    # font cache on its first use. Every process that imports the contexts would pay for it,
    # though only the one making a report needs them.
    from medcloud.reports.pdf import render_pdf

    return {
        FileFormat.PDF: render_pdf(facts, summary),
        FileFormat.CSV: render_csv(facts, summary),
        FileFormat.FHIR: render_fhir(facts, summary),
    }


async def make(
    sources: Sources,
    subject: Subject,
    day: dt.date,
    *,
    trigger: Trigger,
    now: dt.datetime,
) -> tuple[ReportFacts, ReportSummary]:
    """Gather, compute, render and store the files of a new report (not yet recorded)."""
    gathered = await gather(sources, subject, day)
    facts = ReportFacts(
        id=str(uuid.uuid4()),
        organisation_id=subject.organisation_id,
        scope=subject.scope,
        ward_id=subject.ward_id,
        patient_id=subject.patient_id,
        day=day,
        trigger=trigger.value,
        generated_at=now,
    )

    def compute() -> tuple[ReportSummary, dict[FileFormat, bytes]]:
        summary = summarise(gathered, day)
        return summary, render(facts, summary)

    summary, files = await asyncio.to_thread(compute)
    for file_format, content in files.items():
        await sources.objects.put_bytes(
            object_key(subject.organisation_id, facts.id, file_format), content
        )
    return facts, summary


def record(
    uow: UnitOfWork,
    facts: ReportFacts,
    summary: ReportSummary,
    *,
    requested_by: str | None,
    daily_key: str | None,
) -> Report:
    row = Report(
        id=facts.id,
        organisation_id=facts.organisation_id,
        scope=facts.scope.value,
        ward_id=facts.ward_id,
        patient_id=facts.patient_id,
        day=facts.day,
        trigger=facts.trigger,
        generated_at=facts.generated_at,
        requested_by=requested_by,
        summary=summary.model_dump(mode="json"),
        daily_key=daily_key,
    )
    uow.session.add(row)
    uow.publish(
        ReportGenerated(
            organisation_id=facts.organisation_id,
            report_id=facts.id,
            scope=facts.scope.value,
            ward_id=facts.ward_id,
            patient_id=facts.patient_id,
            day=facts.day,
            trigger=facts.trigger,
            requested_by=requested_by,
        )
    )
    return row


def audit_of(
    principal: UserPrincipal | ServiceActor, action: str, row: Report, now: dt.datetime
) -> AuditRecorded:
    return audit_record(
        principal,
        action,
        occurred_at=now,
        organisation_id=row.organisation_id,
        object_type="report",
        object_id=row.id,
        patient_id=row.patient_id,
        detail={"scope": row.scope, "day": row.day.isoformat(), "trigger": row.trigger},
    )


def sources_of(
    *,
    settings: Settings,
    readings: ReadingHistory,
    patients: PatientDirectory,
    care: CareDirectory,
    alarm_history: AlarmHistory,
    devices: DeviceDirectory,
    objects: ObjectStore,
) -> Sources:
    """Assemble what the use cases read through, from the process's dependencies."""
    return Sources(
        readings=readings,
        patients=patients,
        care=care,
        alarms=alarm_history,
        devices=devices,
        objects=objects,
        link_key=links.link_key(settings),
        link_minutes=settings.reports.link_minutes,
    )


def runtime_sources(runtime: Runtime) -> Sources:
    """What the use cases read through, from a process's runtime."""
    return sources_of(
        settings=runtime.settings,
        readings=runtime.readings,
        patients=runtime.patients,
        care=runtime.care,
        alarm_history=runtime.alarm_history,
        devices=runtime.devices,
        objects=runtime.objects,
    )
