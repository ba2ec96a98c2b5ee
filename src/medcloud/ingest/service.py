"""The ingest context's rules on readings: the data-quality gate, rows in catalogue units, the
patient a late reading belongs to, and the quarantine of what was refused.

The use case that applies them for every transport is `intake.py`; reading back, `queries.py`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import structlog
from sqlalchemy.exc import SQLAlchemyError

from medcloud.config import Settings
from medcloud.ingest import repository
from medcloud.ingest.decode import Problem
from medcloud.ingest.repository import Row
from medcloud.ingest.schemas import ReadingIn, UnitValue
from medcloud.platform.catalogue import CATALOGUE, UNITS, accepted_units, to_catalogue_unit
from medcloud.platform.directory import DeviceDirectory, DeviceRef
from medcloud.platform.errors import FieldError
from medcloud.platform.security import DevicePrincipal
from medcloud.platform.uow import UnitOfWork

log = structlog.get_logger(__name__)


def gate(
    readings: Sequence[ReadingIn], *, now: dt.datetime, settings: Settings, batch: bool
) -> list[Problem]:
    """Return every reason the data-quality gate refuses these readings, with the reading."""
    if len(readings) > settings.max_batch_readings:
        error = FieldError(
            "readings", f"at most {settings.max_batch_readings} readings per request"
        )
        return [Problem(error, f"{len(readings)} readings", "too_many")]
    problems: list[Problem] = []
    latest = now + dt.timedelta(seconds=settings.max_future_skew_seconds)
    for index, reading in enumerate(readings):
        prefix = f"readings.{index}." if batch else ""
        if reading.timestamp > latest:
            message = f"more than {settings.max_future_skew_seconds:g} s in the future"
            problems.append(Problem(FieldError(prefix + "timestamp", message), reading, "future"))
        elif reading.timestamp < settings.earliest_reading:
            message = f"before {settings.earliest_reading.isoformat()}: the device clock is unset"
            problems.append(Problem(FieldError(prefix + "timestamp", message), reading, "past"))
        for code, measured in reading.measurements.items():
            field = f"{prefix}measurements.{code}"
            kind = CATALOGUE.get(code)
            if kind is None:
                error = FieldError(field, "unknown measurement type")
                problems.append(Problem(error, reading, "unknown_type"))
                continue
            unit = measured.unit if isinstance(measured, UnitValue) else None
            raw = measured.value if isinstance(measured, UnitValue) else measured
            value = to_catalogue_unit(code, raw, unit)
            if value is None:
                units = ", ".join(accepted_units(code))
                error = FieldError(field, f"unknown unit {unit!r} for {code}; use one of {units}")
                problems.append(Problem(error, reading, "unknown_unit"))
            elif not kind.minimum <= value <= kind.maximum:
                error = FieldError(
                    field,
                    f"outside the possible range {kind.minimum:g}–{kind.maximum:g} {kind.unit}",
                )
                problems.append(Problem(error, reading, "out_of_range"))
    return problems


def check_readings(
    readings: Sequence[ReadingIn], *, now: dt.datetime, settings: Settings, batch: bool
) -> list[FieldError]:
    """Return every reason the data-quality gate refuses these readings (empty: all pass)."""
    return [problem.error for problem in gate(readings, now=now, settings=settings, batch=batch)]


SeriesOf = Mapping[tuple[str, str | None], int]
"""A device's series ids by type and patient."""


def series_needed(
    readings: Sequence[ReadingIn],
    device: DevicePrincipal,
    earlier_patients: Mapping[dt.datetime, str | None] | None = None,
) -> set[tuple[str, str | None]]:
    """Name the (type, patient) series the readings' rows will belong to."""
    earlier = earlier_patients or {}
    needed: set[tuple[str, str | None]] = set()
    for reading in readings:
        timestamp = reading.timestamp.astimezone(dt.UTC)
        patient_id = earlier.get(timestamp, device.patient_id) if earlier else device.patient_id
        needed.update((code, patient_id) for code in reading.measurements)
    return needed


def to_rows(
    readings: Sequence[ReadingIn],
    device: DevicePrincipal,
    *,
    now: dt.datetime,
    settings: Settings,
    series: SeriesOf | None = None,
    earlier_patients: Mapping[dt.datetime, str | None] | None = None,
) -> list[Row]:
    """Turn gated readings into rows in catalogue units, one per (type, timestamp), each in its
    series (`series_needed` names them; without `series` the rows have none yet).

    A row belongs to the device's current patient unless `earlier_patients` names the patient
    assigned at its timestamp (readings taken before the device's last assignment change).
    """
    drifted_before = now - dt.timedelta(seconds=settings.ingest.max_past_drift_seconds)
    earlier = earlier_patients or {}
    series = series or {}
    organisation_id, device_id = device.organisation_id, device.device_id
    # This loop runs for every value a device sends: what does not change per value is looked
    # up once, per reading or per call.
    unique: dict[tuple[str, dt.datetime], Row] = {}
    for reading in readings:
        timestamp = reading.timestamp.astimezone(dt.UTC)
        patient_id = earlier.get(timestamp, device.patient_id) if earlier else device.patient_id
        drifted = timestamp < drifted_before
        for code, measured in reading.measurements.items():
            if isinstance(measured, UnitValue):
                value = to_catalogue_unit(code, measured.value, measured.unit)
                assert value is not None  # noqa: S101  (the gate refused unknown units)
            else:
                value = measured
            unique[(code, timestamp)] = Row(
                organisation_id,
                device_id,
                patient_id,
                code,
                float(value),
                UNITS[code],
                timestamp,
                now,
                drifted,
                series.get((code, patient_id), 0),
            )
    return list(unique.values())


async def patients_before_change(
    devices: DeviceDirectory, device: DevicePrincipal, readings: Sequence[ReadingIn]
) -> dict[dt.datetime, str | None]:
    """Name the patient assigned at each reading taken before the device's last assignment
    change: a late or backfilled reading belongs to whoever wore the device when it was taken."""
    since = device.patient_since
    if since is None:
        return {}
    late = sorted({r.timestamp.astimezone(dt.UTC) for r in readings if r.timestamp < since})
    if not late:
        return {}
    return dict(zip(late, await devices.patients_at(device.device_id, late), strict=True))


def device_principal(device: DeviceRef) -> DevicePrincipal:
    """Act as a device found in the directory rather than by its token (MQTT, file uploads,
    where the broker or the object store has already authenticated it)."""
    return DevicePrincipal(
        device_id=device.id,
        organisation_id=device.organisation_id,
        patient_id=device.patient_id,
        patient_since=device.patient_since,
    )


async def keep_refused(
    uow: UnitOfWork,
    device: DevicePrincipal,
    problems: Sequence[Problem],
    *,
    transport: str,
    settings: Settings,
) -> None:
    """Keep refused readings in quarantine with their reasons (never raises: a failure to keep
    them is logged, and the refusal stands)."""
    limit = settings.ingest.quarantine_payload_bytes
    try:
        async with uow:
            now = uow.clock.now()
            rows = [
                {
                    "organisation_id": device.organisation_id,
                    "device_id": device.device_id,
                    "patient_id": device.patient_id,
                    "transport": transport,
                    "received_at": now,
                    "field": _text(problem.error.field)[:200],
                    "reason": _text(problem.error.message)[:500],
                    "payload": _text(_payload(problem.fragment))[:limit],
                }
                for problem in problems[: settings.ingest.quarantine_max_per_request]
            ]
            await repository.quarantine(uow.session, rows)
            await uow.commit()
    except SQLAlchemyError as exc:
        # The refusal stands and is counted even when it cannot be kept; say so loudly.
        log.error("ingest.quarantine.failed", device_id=device.device_id, error=type(exc).__name__)


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL, which a device may well send.
    return value.replace("\x00", "\\u0000")


def _payload(fragment: Any) -> str:
    if isinstance(fragment, str):
        return fragment
    if isinstance(fragment, ReadingIn):
        return fragment.model_dump_json()
    try:
        return orjson.dumps(fragment).decode()
    except TypeError:
        return repr(fragment)
