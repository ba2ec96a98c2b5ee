"""The daily run: every scheduled report of each day owed, made once whoever runs it (the
worker's singleton loop, `medcloud reports daily`, the CronJob, the function)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import structlog
from sqlalchemy.exc import IntegrityError

from medcloud.config import Settings
from medcloud.platform.audit import ServiceActor
from medcloud.platform.clock import Clock
from medcloud.platform.directory import (
    AlarmHistory,
    CareDirectory,
    DeviceDirectory,
    PatientDirectory,
    ReadingHistory,
)
from medcloud.platform.objects import ObjectStore
from medcloud.platform.runtime import Runtime
from medcloud.platform.uow import UnitOfWorkFactory
from medcloud.reports import figures, repository
from medcloud.reports.making import (
    Sources,
    Subject,
    audit_of,
    make,
    object_key,
    record,
    runtime_sources,
    sources_of,
)
from medcloud.reports.schedule import Schedule, due_days
from medcloud.reports.schemas import DailyRun, FileFormat, Scope, Trigger

log = structlog.get_logger(__name__)

DAILY_RUN = ServiceActor("reports.daily", "")


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
    facts, summary = await make(sources, subject, day, trigger=Trigger.SCHEDULED, now=now)
    try:
        async with uow_factory() as uow:
            row = record(uow, facts, summary, requested_by=None, daily_key=key)
            actor = ServiceActor(DAILY_RUN.name, subject.organisation_id)
            uow.publish(audit_of(actor, "report.generate", row, now))
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
