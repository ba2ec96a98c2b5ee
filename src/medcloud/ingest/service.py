"""Use cases of the ingest context: the data-quality gate, storing readings, reading them back."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from medcloud.config import Settings
from medcloud.ingest import repository
from medcloud.ingest.catalogue import CATALOGUE
from medcloud.ingest.events import ReadingsCollected, Sample
from medcloud.ingest.schemas import IngestResult, ReadingIn, ReadingPage, ReadingRead
from medcloud.platform.audit import audit_record
from medcloud.platform.directory import CareDirectory, DeviceDirectory
from medcloud.platform.errors import FieldError, Invalid, NotFound
from medcloud.platform.metrics import Metrics
from medcloud.platform.paging import decode_cursor, encode_cursor
from medcloud.platform.policy import (
    authorize_device_write,
    ensure_in_care_scope,
    ensure_same_organisation,
)
from medcloud.platform.security import Principal, UserPrincipal
from medcloud.platform.uow import UnitOfWork


def check_readings(
    readings: Sequence[ReadingIn], *, now: dt.datetime, settings: Settings, batch: bool
) -> list[FieldError]:
    """Return every reason the data-quality gate refuses these readings (empty: all pass)."""
    errors: list[FieldError] = []
    if len(readings) > settings.max_batch_readings:
        return [
            FieldError("readings", f"at most {settings.max_batch_readings} readings per request")
        ]
    latest = now + dt.timedelta(seconds=settings.max_future_skew_seconds)
    for index, reading in enumerate(readings):
        prefix = f"readings.{index}." if batch else ""
        if reading.timestamp > latest:
            errors.append(
                FieldError(
                    prefix + "timestamp",
                    f"more than {settings.max_future_skew_seconds:g} s in the future",
                )
            )
        for code, value in reading.measurements.items():
            kind = CATALOGUE.get(code)
            field = f"{prefix}measurements.{code}"
            if kind is None:
                errors.append(FieldError(field, "unknown measurement type"))
            elif not kind.minimum <= value <= kind.maximum:
                errors.append(
                    FieldError(
                        field,
                        f"outside the possible range {kind.minimum:g}–{kind.maximum:g} {kind.unit}",
                    )
                )
    return errors


async def ingest_readings(
    *,
    uow: UnitOfWork,
    principal: Principal,
    device_id: str,
    readings: Sequence[ReadingIn],
    batch: bool,
    settings: Settings,
    metrics: Metrics,
    transport: str = "http",
) -> IngestResult:
    """Store a device's readings all or nothing, and publish the newly stored ones."""
    device = authorize_device_write(principal, device_id)
    now = uow.clock.now()
    errors = check_readings(readings, now=now, settings=settings, batch=batch)
    if errors:
        metrics.readings_rejected.labels(transport, "invalid").inc(len(readings))
        raise Invalid(f"{len(errors)} problem(s) in the readings; none were stored", errors=errors)

    unique: dict[tuple[str, dt.datetime], dict[str, Any]] = {}
    for reading in readings:
        timestamp = reading.timestamp.astimezone(dt.UTC)
        for code, value in reading.measurements.items():
            unique[(code, timestamp)] = {
                "organisation_id": device.organisation_id,
                "device_id": device.device_id,
                "patient_id": device.patient_id,
                "type": code,
                "value": float(value),
                "unit": CATALOGUE[code].unit,
                "timestamp": timestamp,
                "received_at": now,
            }
    async with uow:
        stored = await repository.insert_new(uow.session, list(unique.values()))
        if stored:
            uow.publish(
                _collected(
                    device.organisation_id,
                    device.device_id,
                    device.patient_id,
                    stored,
                    received_at=now,
                )
            )
        await uow.commit()
    metrics.readings_ingested.labels(transport).inc(len(stored))
    return IngestResult(
        device_id=device_id,
        accepted=len(unique),
        stored=len(stored),
        duplicates=len(unique) - len(stored),
    )


def _collected(
    organisation_id: str,
    device_id: str,
    patient_id: str | None,
    stored: Sequence[tuple[str, float, dt.datetime]],
    *,
    received_at: dt.datetime,
) -> ReadingsCollected:
    by_time: dict[dt.datetime, dict[str, float]] = {}
    for code, value, timestamp in stored:
        by_time.setdefault(timestamp.astimezone(dt.UTC), {})[code] = value
    samples = tuple(Sample(timestamp=t, measurements=m) for t, m in sorted(by_time.items()))
    return ReadingsCollected(
        organisation_id=organisation_id,
        device_id=device_id,
        patient_id=patient_id,
        received_at=received_at,
        timestamp=samples[-1].timestamp,
        data=samples[-1].measurements,
        samples=samples,
    )


async def list_readings(
    *,
    uow: UnitOfWork,
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
    device = await devices.get(device_id)
    if device is None:
        raise NotFound("device not found")
    ensure_same_organisation(principal, device.organisation_id, "device")
    scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
    ensure_in_care_scope(scope, device.patient_id, "device")
    after = None
    if cursor:
        timestamp, key = decode_cursor(cursor)
        if not key.isdigit():
            raise Invalid(
                "the cursor is not one this server issued",
                errors=[FieldError("query.cursor", "unknown cursor")],
            )
        after = (timestamp, int(key))
    async with uow:
        rows = await repository.page(
            uow.session,
            device_id,
            patients=None if scope.whole_organisation else scope.patient_ids,
            start=start,
            end=end,
            limit=limit + 1,
            after=after,
        )
        uow.publish(
            audit_record(
                principal,
                "readings.read",
                occurred_at=uow.clock.now(),
                object_type="device",
                object_id=device_id,
                patient_id=device.patient_id,
                detail={"count": min(len(rows), limit)},
            )
        )
        await uow.commit()
    items = [
        ReadingRead(type=r.type, value=r.value, unit=r.unit, timestamp=r.timestamp)
        for r in rows[:limit]
    ]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor(last.timestamp, last.id)
    return ReadingPage(device_id=device_id, items=items, next_cursor=next_cursor)
