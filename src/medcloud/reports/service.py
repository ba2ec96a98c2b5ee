"""Use cases of the reports context: make a report (on demand or daily), read, list, download."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.config import Settings
from medcloud.platform.audit import AuditRecorded, ServiceActor, audit_record
from medcloud.platform.clock import Clock
from medcloud.platform.directory import (
    AlarmFact,
    AlarmHistory,
    CampaignCard,
    CareDirectory,
    CareScope,
    DeviceCard,
    DeviceDirectory,
    DeviceQuery,
    PatientDirectory,
    ReadingBucket,
    ReadingHistory,
    ReadingQuery,
    ScoreFact,
)
from medcloud.platform.errors import FieldError, Forbidden, Invalid, NotFound, OutOfScope
from medcloud.platform.objects import ObjectNotFound, ObjectStore
from medcloud.platform.paging import decode_cursor, page_of
from medcloud.platform.runtime import Runtime
from medcloud.platform.security import UserPrincipal
from medcloud.platform.uow import UnitOfWork, UnitOfWorkFactory
from medcloud.reports import figures, links, repository
from medcloud.reports.events import ReportGenerated
from medcloud.reports.exports import ReportFacts, render_csv, render_fhir
from medcloud.reports.models import Report
from medcloud.reports.schedule import Schedule, due_days
from medcloud.reports.schemas import (
    DailyRun,
    Downloads,
    FileFormat,
    ReportCreate,
    ReportPage,
    ReportQuery,
    ReportRead,
    ReportSummary,
    Scope,
    Trigger,
)

log = structlog.get_logger(__name__)

MEDIA_TYPES = {
    FileFormat.PDF: "application/pdf",
    FileFormat.CSV: "text/csv",
    FileFormat.FHIR: "application/fhir+json",
}
EXTENSIONS = {FileFormat.PDF: "pdf", FileFormat.CSV: "csv", FileFormat.FHIR: "json"}
DAILY_RUN = ServiceActor("reports.daily", "")
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


# Making reports


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


async def _make(
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


def _record(
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


async def create_report(
    *, uow: UnitOfWork, sources: Sources, principal: UserPrincipal, body: ReportCreate
) -> ReportRead:
    """Make a report of one day now, for a subject in the user's reach (audited)."""
    subject = _subject_of(principal, body)
    now = uow.clock.now()
    if body.day > now.date():
        raise Invalid("the day has not begun", errors=[FieldError("body.day", "a future day")])
    try:
        await _ensure_may_read(sources, principal, subject)
    except OutOfScope:
        raise
    except NotFound:
        # A ward or patient the body names that the organisation does not have, as for any
        # other field naming an object; one outside the user's care stays a 404.
        field = "ward_id" if subject.scope is Scope.WARD else "patient_id"
        raise Invalid(
            f"no such {field.removesuffix('_id')} in your organisation",
            errors=[FieldError(f"body.{field}", "not found")],
        ) from None
    facts, summary = await _make(sources, subject, body.day, trigger=Trigger.ON_DEMAND, now=now)
    async with uow:
        row = _record(uow, facts, summary, requested_by=principal.user_id, daily_key=None)
        uow.publish(_audit(principal, "report.generate", row, now))
        await uow.commit()
    log.info("report.generated", report_id=facts.id, scope=subject.scope.value, trigger="on_demand")
    return _read(sources, row, now)


def _subject_of(principal: UserPrincipal, body: ReportCreate) -> Subject:
    """The subject the request names, refusing fields that do not belong to its scope."""
    named = {"ward_id": body.ward_id, "patient_id": body.patient_id}
    wanted = {Scope.ORGANISATION: None, Scope.WARD: "ward_id", Scope.PATIENT: "patient_id"}[
        body.scope
    ]
    for field, value in named.items():
        if field == wanted and not value:
            raise Invalid(
                f"a {body.scope.value} report names its {field}",
                errors=[FieldError(f"body.{field}", "required for this scope")],
            )
        if field != wanted and value is not None:
            raise Invalid(
                f"a {body.scope.value} report names no {field}",
                errors=[FieldError(f"body.{field}", "not allowed for this scope")],
            )
    return Subject(principal.organisation_id, body.scope, body.ward_id, body.patient_id)


async def _ensure_may_read(sources: Sources, principal: UserPrincipal, subject: Subject) -> None:
    """Answer 404 for a ward or patient outside the user's organisation or care scope."""
    if subject.organisation_id != principal.organisation_id:
        raise OutOfScope("report not found")
    scope = await _care_scope(sources, principal)
    if subject.scope is Scope.PATIENT:
        patient = await sources.patients.get(subject.patient_id or "")
        if patient is None or patient.organisation_id != principal.organisation_id:
            raise NotFound("patient not found")
        if not scope.allows(subject.patient_id):
            raise OutOfScope("patient not found")
    elif subject.scope is Scope.WARD:
        ward_id = subject.ward_id or ""
        if not await sources.patients.has_ward(principal.organisation_id, ward_id):
            raise NotFound("ward not found")
        if not scope.whole_organisation and principal.user_id not in (
            await sources.care.ward_members(principal.organisation_id, ward_id)
        ):
            raise OutOfScope("ward not found")
    elif not scope.whole_organisation:
        # An organisation's figures include patients outside the user's care teams.
        raise Forbidden("an organisation report needs the whole organisation in your care")


async def _care_scope(sources: Sources, principal: UserPrincipal) -> CareScope:
    return await sources.care.scope(
        principal.user_id, principal.organisation_id, principal.role.value
    )


# Reading


async def get_report(
    *, uow: UnitOfWork, sources: Sources, principal: UserPrincipal, report_id: str
) -> ReportRead:
    """Return a report the user may read (audited); 404 otherwise."""
    async with uow:
        row = await repository.get(uow.session, report_id)
        if row is None or row.organisation_id != principal.organisation_id:
            raise NotFound("report not found")
        subject = Subject(row.organisation_id, Scope(row.scope), row.ward_id, row.patient_id)
        try:
            await _ensure_may_read(sources, principal, subject)
        except (NotFound, Forbidden):
            raise OutOfScope("report not found") from None
        now = uow.clock.now()
        uow.publish(_audit(principal, "report.read", row, now))
        await uow.commit()
    return _read(sources, row, now)


async def list_reports(
    *,
    session: AsyncSession,
    sources: Sources,
    principal: UserPrincipal,
    query: ReportQuery,
    now: dt.datetime,
) -> ReportPage:
    """List the reports the user may read, newest first."""
    scope = await _care_scope(sources, principal)
    wards: frozenset[str] = frozenset()
    if not scope.whole_organisation:
        # A user's wards are those of the patients in their care they are a member of (a
        # break-glass grant opens one patient, not the patient's ward).
        found = await sources.patients.wards(sorted(scope.patient_ids))
        members = {
            ward: await sources.care.ward_members(principal.organisation_id, ward)
            for ward in {w for w in found.values() if w is not None}
        }
        wards = frozenset(ward for ward, ids in members.items() if principal.user_id in ids)
    rows = await repository.page(
        session,
        principal.organisation_id,
        allowed=repository.visible(scope.whole_organisation, wards, scope.patient_ids),
        scope=query.scope.value if query.scope is not None else None,
        ward_id=query.ward_id,
        patient_id=query.patient_id,
        after=decode_cursor(query.cursor) if query.cursor else None,
        limit=query.limit + 1,
    )
    shown, cursor = page_of(rows, query.limit, lambda r: (r.generated_at, r.id))
    return ReportPage(items=[_read(sources, row, now) for row in shown], next_cursor=cursor)


def _read(sources: Sources, row: Report, now: dt.datetime) -> ReportRead:
    expires = int(now.timestamp()) + sources.link_minutes * 60
    urls = {
        file_format.value: (
            f"/api/v1/reports/{row.id}/files/{file_format.value}?expires={expires}"
            f"&signature={links.sign(sources.link_key, row.id, file_format.value, expires)}"
        )
        for file_format in FileFormat
    }
    return ReportRead(
        id=row.id,
        organisation_id=row.organisation_id,
        scope=Scope(row.scope),
        ward_id=row.ward_id,
        patient_id=row.patient_id,
        day=row.day,
        trigger=Trigger(row.trigger),
        generated_at=row.generated_at,
        summary=ReportSummary.model_validate(row.summary),
        downloads=Downloads(**urls, expires_at=dt.datetime.fromtimestamp(expires, tz=dt.UTC)),
    )


async def download(
    *,
    uow: UnitOfWork,
    sources: Sources,
    report_id: str,
    file_format: FileFormat,
    expires: int,
    signature: str,
) -> ReportFile:
    """Return a report's file for a valid, unexpired signed link (audited)."""
    now = uow.clock.now()
    if not links.verify(
        sources.link_key, report_id, file_format.value, expires, signature, now=now.timestamp()
    ):
        raise Forbidden("the link is not valid, or no longer")
    async with uow:
        row = await repository.get(uow.session, report_id)
        if row is None:
            raise NotFound("report not found")
        try:
            content = await sources.objects.read_bytes(
                object_key(row.organisation_id, row.id, file_format)
            )
        except ObjectNotFound:
            # Removed from the store behind the platform's back (a retention rule, a person).
            raise NotFound("the report's file is no longer stored") from None
        event = audit_record(
            None,
            "report.download",
            occurred_at=now,
            organisation_id=row.organisation_id,
            object_type="report",
            object_id=row.id,
            patient_id=row.patient_id,
            detail={"format": file_format.value, "scope": row.scope},
        )
        uow.publish(event)
        await uow.commit()
    filename = f"medcloud-report-{row.day.isoformat()}-{row.scope}-{row.id[:8]}"
    return ReportFile(content, MEDIA_TYPES[file_format], f"{filename}.{EXTENSIONS[file_format]}")


def _audit(
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


# The daily run


async def run_day(
    *, uow_factory: UnitOfWorkFactory, sources: Sources, day: dt.date, patient_reports: bool
) -> int:
    """Make the scheduled reports of `day` that no run has made yet; return how many."""
    start, end = figures.day_bounds(day)
    patient_ids = sorted(await sources.readings.patients(None, start, end))
    subjects: list[Subject] = []
    cards = await sources.patients.cards(patient_ids)
    for organisation_id in sorted({card.organisation_id for card in cards}):
        mine = [card for card in cards if card.organisation_id == organisation_id]
        subjects.append(Subject(organisation_id, Scope.ORGANISATION))
        wards = sorted({card.ward_id for card in mine if card.ward_id is not None})
        subjects += [Subject(organisation_id, Scope.WARD, ward_id=ward) for ward in wards]
        if patient_reports:
            subjects += [
                Subject(organisation_id, Scope.PATIENT, patient_id=card.id)
                for card in sorted(mine, key=lambda c: c.id)
            ]
    made = 0
    for subject in subjects:
        made += await _make_scheduled(uow_factory, sources, subject, day)
    return made


async def _make_scheduled(
    uow_factory: UnitOfWorkFactory, sources: Sources, subject: Subject, day: dt.date
) -> bool:
    """Make one scheduled report unless another run has; tell whether this one made it."""
    key = subject.daily_key(day)
    async with uow_factory() as uow:
        if await repository.by_daily_key(uow.session, key) is not None:
            return False
        now = uow.clock.now()
    facts, summary = await _make(sources, subject, day, trigger=Trigger.SCHEDULED, now=now)
    try:
        async with uow_factory() as uow:
            row = _record(uow, facts, summary, requested_by=None, daily_key=key)
            actor = ServiceActor(DAILY_RUN.name, subject.organisation_id)
            uow.publish(_audit(actor, "report.generate", row, now))
            await uow.commit()
    except IntegrityError:
        # Another worker made the same report meanwhile: its row stands, these files go.
        for file_format in FileFormat:
            await sources.objects.delete(object_key(subject.organisation_id, facts.id, file_format))
        return False
    log.info("report.generated", report_id=facts.id, scope=subject.scope.value, trigger="scheduled")
    return True


async def run_daily(
    *,
    uow_factory: UnitOfWorkFactory,
    sources: Sources,
    schedule: Schedule,
    now: dt.datetime,
    catch_up_days: int,
    patient_reports: bool,
    day: dt.date | None = None,
) -> DailyRun:
    """Make the reports owed: every day since the last one done (bounded), or just `day`."""
    async with uow_factory() as uow:
        done_until = await repository.watermark(uow.session)
    days = [day] if day is not None else due_days(schedule, now, done_until, catch_up_days)
    made = 0
    for owed in days:
        made += await run_day(
            uow_factory=uow_factory, sources=sources, day=owed, patient_reports=patient_reports
        )
        # A day asked for by name moves the watermark only where it leaves no day behind.
        if day is None or done_until is None or owed <= done_until + dt.timedelta(days=1):
            async with uow_factory() as uow:
                await repository.advance_watermark(uow.session, owed, uow.clock.now())
                await uow.commit()
    return DailyRun(days=days, made=made)


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


async def daily_reports(
    *,
    settings: Settings,
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    stop: asyncio.Event,
    readings: ReadingHistory,
    patients: PatientDirectory,
    care: CareDirectory,
    alarm_history: AlarmHistory,
    devices: DeviceDirectory,
    objects: ObjectStore,
) -> None:
    """Make the reports owed, then sleep until the next start; one process at a time runs it
    (a singleton), and the unique daily key stops any second report a race could make."""
    schedule = Schedule.parse(settings.reports.schedule)
    sources = sources_of(
        settings=settings,
        readings=readings,
        patients=patients,
        care=care,
        alarm_history=alarm_history,
        devices=devices,
        objects=objects,
    )
    while not stop.is_set():
        run = await run_daily(
            uow_factory=uow_factory,
            sources=sources,
            schedule=schedule,
            now=clock.now(),
            catch_up_days=settings.reports.catch_up_days,
            patient_reports=settings.reports.patient_reports,
        )
        if run.days:
            log.info("reports.daily", days=[d.isoformat() for d in run.days], made=run.made)
        wait = (schedule.next_after(clock.now()) - clock.now()).total_seconds()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(wait, 1.0))


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


async def run_once(
    runtime: Runtime, *, day: dt.date | None = None, now: dt.datetime | None = None
) -> DailyRun:
    """The daily run once, in a process of its own (`medcloud reports daily`, the function):
    every day owed at `now` (the clock's), or just `day`. Safe alongside the scheduler and
    other runs."""
    settings = runtime.settings
    return await run_daily(
        uow_factory=runtime.uow,
        sources=runtime_sources(runtime),
        schedule=Schedule.parse(settings.reports.schedule),
        now=now or runtime.clock.now(),
        catch_up_days=settings.reports.catch_up_days,
        patient_reports=settings.reports.patient_reports,
        day=day,
    )
