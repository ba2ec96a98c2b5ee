"""Read-side use cases of the ingest context: stored readings, their buckets, a patient's latest
values and the quarantine, for users in care scope, every read audited.

Kept apart from `service.py` (accepting, gating and storing readings) because the two change for
different reasons: these answer users and never write a reading.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from collections.abc import AsyncIterator, Sequence

from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.config import Settings
from medcloud.ingest import repository, rollups
from medcloud.ingest.schemas import (
    Bucket,
    BucketPage,
    LatestReading,
    LatestReadings,
    QuarantinedReadingRead,
    QuarantinePage,
    ReadingPage,
    ReadingRead,
)
from medcloud.platform.audit import audit_record
from medcloud.platform.catalogue import CATALOGUE
from medcloud.platform.directory import CareDirectory, DeviceDirectory, PatientDirectory
from medcloud.platform.errors import FieldError, Invalid, NotFound
from medcloud.platform.events import Event
from medcloud.platform.paging import decode_numbered_cursor, page_of
from medcloud.platform.policy import (
    Action,
    allowed,
    ensure_in_care_scope,
    ensure_same_organisation,
)
from medcloud.platform.security import Role, UserPrincipal
from medcloud.platform.uow import UnitOfWork

LIVE_POLL_SECONDS = 0.5
"""How often a live stream looks for newer readings (one probe per series of the patient): a
bedside chart shows a new value well within the 2 s a clinician expects, even on a busy host."""
HEARTBEAT_SECONDS = 15.0
"""A quiet stream sends a comment this often, so proxies keep it open."""

_LATEST = TypeAdapter(LatestReading)

Sessions = async_sessionmaker[AsyncSession]
"""Where the reads go: the read replica's sessions when one is configured (they may lag)."""


async def _audited(uow: UnitOfWork, record: Event) -> None:
    """Record a read in the audit log before it is answered: no answer goes out unaudited."""
    async with uow:
        uow.publish(record)
        await uow.commit()


async def _audit_readings_read(
    uow: UnitOfWork,
    principal: UserPrincipal,
    of: tuple[str, str],
    patient_id: str | None,
    detail: dict[str, int | str],
) -> None:
    """Audit a read of readings `of` a ("device" or "patient", id)."""
    object_type, object_id = of
    await _audited(
        uow,
        audit_record(
            principal,
            "readings.read",
            occurred_at=uow.clock.now(),
            object_type=object_type,
            object_id=object_id,
            patient_id=patient_id,
            detail=detail,
        ),
    )


async def _device_in_scope(
    devices: DeviceDirectory, care: CareDirectory, principal: UserPrincipal, device_id: str
) -> tuple[str | None, frozenset[str] | None]:
    """Return (the device's patient, the patients the user may see or None for all), or 404."""
    device = await devices.get(device_id)
    if device is None:
        raise NotFound("device not found")
    ensure_same_organisation(principal, device.organisation_id, "device")
    scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
    ensure_in_care_scope(scope, device.patient_id, "device")
    return device.patient_id, None if scope.whole_organisation else scope.patient_ids


async def list_readings(
    *,
    uow: UnitOfWork,
    replica: Sessions,
    devices: DeviceDirectory,
    care: CareDirectory,
    principal: UserPrincipal,
    device_id: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    limit: int,
    cursor: str | None,
) -> ReadingPage:
    """Return a device's readings, newest first, to a user caring for its patient (audited).

    Only readings attributed to patients in the user's care scope are returned: a device that
    moved between patients keeps each reading with the patient it was taken from.
    """
    patient_id, patients = await _device_in_scope(devices, care, principal, device_id)
    after = decode_numbered_cursor(cursor) if cursor else None
    async with replica() as session:
        series = await repository.device_series(session, device_id, patients)
        rows = await repository.page(
            session, series, start=start, end=end, limit=limit + 1, after=after
        )
    detail: dict[str, int | str] = {"count": min(len(rows), limit)}
    await _audit_readings_read(uow, principal, ("device", device_id), patient_id, detail)
    shown, next_cursor = page_of(rows, limit, lambda r: (r.timestamp, r.series_id))
    items = [
        ReadingRead(
            type=r.type,
            value=r.value,
            unit=r.unit,
            timestamp=r.timestamp,
            clock_drift=r.clock_drift,
        )
        for r in shown
    ]
    return ReadingPage.model_construct(device_id=device_id, items=items, next_cursor=next_cursor)


async def summarise_readings(
    *,
    uow: UnitOfWork,
    replica: Sessions,
    devices: DeviceDirectory,
    care: CareDirectory,
    principal: UserPrincipal,
    device_id: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    bucket_seconds: int | None,
    settings: Settings,
) -> BucketPage:
    """Return min/max/avg per time bucket of a device's readings, at most `max_chart_points`
    buckets per type, to a user caring for its patient (audited). Defaults: the last 24 h."""
    patient_id, patients = await _device_in_scope(devices, care, principal, device_id)
    end = end or uow.clock.now()
    start = start or end - dt.timedelta(hours=24)
    if start >= end:
        raise Invalid(
            "start must be before end", errors=[FieldError("query.start", "not before end")]
        )
    span = (end - start).total_seconds()
    smallest = max(1, math.ceil(span / settings.ingest.max_chart_points))
    size = chart_bucket(max(bucket_seconds or smallest, smallest))
    async with replica() as session:
        series = await repository.device_series(session, device_id, patients)
        found = await rollups.buckets(session, series, start=start, end=end, bucket_seconds=size)
    detail: dict[str, int | str] = {"buckets": len(found), "bucket_seconds": size}
    await _audit_readings_read(uow, principal, ("device", device_id), patient_id, detail)
    items = [
        Bucket(
            type=code,
            start=dt.datetime.fromtimestamp(number * size, dt.UTC),
            min=low,
            max=high,
            avg=mean,
            count=count,
        )
        for code, number, low, high, mean, count in found
    ]
    return BucketPage.model_construct(device_id=device_id, bucket_seconds=size, items=items)


def chart_bucket(seconds: int) -> int:
    """Round a bucket of a minute or more up to whole minutes, of ten minutes or more up to
    whole five minutes, and of six hours or more up to whole hours, so the rollups tile it: a
    chart then reads at most a few hundred rollups per bucket, not every reading (a week's
    chart: 2,016 five-minute rollups per type instead of 10,080 minute ones)."""
    for width, from_seconds in ((3600, 6 * 3600), (300, 600), (60, 60)):
        if seconds >= from_seconds:
            return math.ceil(seconds / width) * width
    return seconds


async def _patient_in_scope(
    patients: PatientDirectory, care: CareDirectory, principal: UserPrincipal, patient_id: str
) -> None:
    """Refuse (404) a patient the user does not care for."""
    patient = await patients.get(patient_id)
    if patient is None:
        raise NotFound("patient not found")
    ensure_same_organisation(principal, patient.organisation_id, "patient")
    scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
    ensure_in_care_scope(scope, patient_id, "patient")


def _latest_items(found: Sequence[repository.Latest]) -> list[LatestReading]:
    return [
        LatestReading(
            type=r.type, value=r.value, unit=r.unit, timestamp=r.timestamp, device_id=r.device_id
        )
        for r in found
    ]


async def latest_readings(
    *,
    uow: UnitOfWork,
    replica: Sessions,
    patients: PatientDirectory,
    care: CareDirectory,
    principal: UserPrincipal,
    patient_id: str,
) -> LatestReadings:
    """Return a patient's newest value of every measurement type, to a user caring for them
    (audited)."""
    await _patient_in_scope(patients, care, principal, patient_id)
    async with replica() as session:
        found = await repository.latest_per_type(
            session, principal.organisation_id, patient_id, sorted(CATALOGUE)
        )
    detail: dict[str, int | str] = {"count": len(found), "view": "latest"}
    await _audit_readings_read(uow, principal, ("patient", patient_id), patient_id, detail)
    return LatestReadings(patient_id=patient_id, items=_latest_items(found))


async def latest_stream(
    *,
    uow: UnitOfWork,
    sessions: Sessions,
    patients: PatientDirectory,
    care: CareDirectory,
    principal: UserPrincipal,
    patient_id: str,
    poll_seconds: float = LIVE_POLL_SECONDS,
) -> AsyncIterator[str]:
    """Open a patient's live readings for a user caring for them: refuse now (404) or return
    Server-Sent Events, a `reading` for each newer value of a type, as a bedside chart draws.

    The stream is audited once, when opened, not on every pass as polling `latest` would be.
    The care scope is read again on every pass: a nurse moved off the ward stops receiving at
    once (an `ended` event). Fresh reads, not the replica's: a live chart shows what was stored.
    """
    await _patient_in_scope(patients, care, principal, patient_id)
    detail: dict[str, int | str] = {"view": "latest-stream"}
    await _audit_readings_read(uow, principal, ("patient", patient_id), patient_id, detail)
    return _latest_events(sessions, care, principal, patient_id, poll_seconds)


async def _latest_events(
    sessions: Sessions,
    care: CareDirectory,
    principal: UserPrincipal,
    patient_id: str,
    poll_seconds: float,
) -> AsyncIterator[str]:
    seen: dict[str, dt.datetime] = {}
    quiet = 0.0
    yield "retry: 2000\n\n"
    while True:
        scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
        if not scope.allows(patient_id):
            yield 'event: ended\ndata: {"status": 404}\n\n'
            return
        async with sessions() as session:
            found = await repository.latest_per_type(
                session, principal.organisation_id, patient_id, sorted(CATALOGUE)
            )
        fresh = [i for i in _latest_items(found) if seen.get(i["type"]) != i["timestamp"]]
        for item in fresh:
            seen[item["type"]] = item["timestamp"]
            yield f"event: reading\ndata: {_LATEST.dump_json(item).decode()}\n\n"
        if fresh:
            quiet = 0.0
        elif quiet >= HEARTBEAT_SECONDS:
            quiet = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(poll_seconds)
        quiet += poll_seconds


async def list_quarantine(
    *,
    uow: UnitOfWork,
    replica: Sessions,
    care: CareDirectory,
    principal: UserPrincipal,
    device_id: str | None,
    limit: int,
    cursor: str | None,
) -> QuarantinePage:
    """Return refused readings of the principal's organisation with their reasons, newest first.

    Admins and technicians look after every device and see every entry; clinical staff see
    those of their patients. The refused payload holds clinical values, so it is shown only to
    those who may read readings (technicians get field and reason), and showing it is audited.
    """
    visible: frozenset[str] | None = None
    if principal.role in (Role.CLINICIAN, Role.NURSE):
        scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
        visible = None if scope.whole_organisation else scope.patient_ids
    before_id = decode_numbered_cursor(cursor)[1] if cursor else None
    show_payload = allowed(principal, Action.READINGS_READ)
    async with replica() as session:
        rows = await repository.quarantined(
            session,
            principal.organisation_id,
            device_id=device_id,
            patients=visible,
            limit=limit + 1,
            before_id=before_id,
        )
    if show_payload and rows:
        await _audited(
            uow,
            audit_record(
                principal,
                "quarantine.read",
                occurred_at=uow.clock.now(),
                object_type="device" if device_id else "organisation",
                object_id=device_id or principal.organisation_id,
                detail={"count": min(len(rows), limit)},
            ),
        )
    shown, next_cursor = page_of(rows, limit, lambda r: (r.received_at, r.id))
    items = [
        QuarantinedReadingRead(
            id=r.id,
            device_id=r.device_id,
            transport=r.transport,
            received_at=r.received_at,
            field=r.field,
            reason=r.reason,
            payload=r.payload if show_payload else None,
        )
        for r in shown
    ]
    return QuarantinePage(items=items, next_cursor=next_cursor)
