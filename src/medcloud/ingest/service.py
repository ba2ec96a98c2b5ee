"""Write-side use cases of the ingest context: the data-quality gate and storing readings.

Reading them back is in `queries.py`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import structlog
from sqlalchemy.exc import SQLAlchemyError

from medcloud.config import Settings
from medcloud.ingest import repository
from medcloud.ingest.decode import Problem, Undecodable, decode
from medcloud.ingest.repository import Row
from medcloud.ingest.schemas import IngestResult, ReadingIn, UnitValue
from medcloud.ingest.writer import Backlogged, Job, ReadingWriter, store
from medcloud.platform.cache import Cache
from medcloud.platform.catalogue import CATALOGUE, accepted_units, to_catalogue_unit
from medcloud.platform.directory import DeviceDirectory, DeviceRef
from medcloud.platform.errors import FieldError, Invalid, Unavailable
from medcloud.platform.metrics import Metrics
from medcloud.platform.policy import authorize_device_write
from medcloud.platform.security import DevicePrincipal, Principal
from medcloud.platform.uow import UnitOfWork

log = structlog.get_logger(__name__)

RETRY_AFTER_SECONDS = 1
UNITS = {code: kind.unit for code, kind in CATALOGUE.items()}


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


def to_rows(
    readings: Sequence[ReadingIn],
    device: DevicePrincipal,
    *,
    now: dt.datetime,
    settings: Settings,
    earlier_patients: Mapping[dt.datetime, str | None] | None = None,
) -> list[Row]:
    """Turn gated readings into rows in catalogue units, one per (type, timestamp).

    A row belongs to the device's current patient unless `earlier_patients` names the patient
    assigned at its timestamp (readings taken before the device's last assignment change).
    """
    drifted_before = now - dt.timedelta(seconds=settings.ingest.max_past_drift_seconds)
    earlier = earlier_patients or {}
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


async def ingest_readings(
    *,
    uow: UnitOfWork,
    principal: Principal,
    device_id: str,
    readings: Sequence[ReadingIn],
    batch: bool,
    settings: Settings,
    metrics: Metrics,
    devices: DeviceDirectory,
    transport: str = "http",
    writer: ReadingWriter | None = None,
    wait_ms: float | None = None,
) -> IngestResult:
    """Store a device's readings all or nothing, and publish the newly stored ones.

    Refused readings are kept in quarantine with their reasons before the refusal is raised.
    With a running `writer` the rows share a micro-batch transaction with other requests' (and
    may wait up to `wait_ms` for them, see `ReadingWriter.submit`); either way this returns only
    after they are committed.
    """
    device = authorize_device_write(principal, device_id)
    now = uow.clock.now()
    problems = gate(readings, now=now, settings=settings, batch=batch)
    if problems:
        await refuse(
            uow,
            device,
            problems,
            transport=transport,
            settings=settings,
            metrics=metrics,
            total=len(readings),
        )
    earlier = await patients_before_change(devices, device, readings)
    rows = to_rows(readings, device, now=now, settings=settings, earlier_patients=earlier)
    if writer is not None:
        try:
            stored = await writer.submit(
                rows,
                organisation_id=device.organisation_id,
                device_id=device.device_id,
                received_at=now,
                wait_ms=wait_ms,
            )
        except Backlogged as exc:
            metrics.readings_rejected.labels(transport, "backpressure").inc(len(rows))
            raise Unavailable(
                "the readings store is catching up; send again shortly",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from exc
    else:
        # No writer runs in this process (a unit test, a process without the ingest hooks):
        # commit this request alone, exactly as a batch of one.
        inline = Job(
            device.organisation_id,
            device.device_id,
            now,
            rows,
            asyncio.get_running_loop().create_future(),
        )
        stored = (await store(lambda: uow, [inline]))[0]
    metrics.readings_ingested.labels(transport).inc(len(stored))
    drifted = sum(1 for row in rows if row.clock_drift)
    if drifted:
        metrics.readings_clock_drift.labels(transport).inc(drifted)
    return IngestResult(
        device_id=device_id,
        accepted=len(rows),
        stored=len(stored),
        duplicates=len(rows) - len(stored),
    )


async def receive_readings(
    *,
    uow: UnitOfWork,
    principal: Principal,
    device_id: str,
    body: bytes,
    content_type: str | None,
    content_encoding: str | None,
    idempotency_key: str | None,
    settings: Settings,
    metrics: Metrics,
    cache: Cache,
    devices: DeviceDirectory,
    writer: ReadingWriter | None,
) -> IngestResult:
    """Decode an HTTP body (JSON or NDJSON, gzip or not) and ingest it; replay the answer to a
    repeated Idempotency-Key with the same body, refuse the key with another body."""
    device = authorize_device_write(principal, device_id)
    record_key = digest = None
    if idempotency_key is not None:
        record_key = (
            "ingest:idempotency:"
            + hashlib.sha256(f"{device.device_id}\0{idempotency_key}".encode()).hexdigest()
        )
        hasher = hashlib.sha256(f"{content_type}\0{content_encoding}\0".encode())
        hasher.update(body)
        digest = hasher.hexdigest()
        seen = await cache.get(record_key)
        if seen is not None:
            record = orjson.loads(seen)
            if record["digest"] != digest:
                raise Invalid(
                    "this Idempotency-Key was used with another body",
                    errors=[FieldError("header.idempotency-key", "already used with another body")],
                )
            return IngestResult.model_validate(record["result"])
    try:
        decoded = decode(
            body,
            content_type=content_type,
            content_encoding=content_encoding,
            max_inflated_bytes=settings.ingest.max_decompressed_bytes,
            max_readings=settings.max_batch_readings,
        )
    except Undecodable as exc:
        await keep_refused(uow, device, [exc.problem], transport="http", settings=settings)
        metrics.readings_rejected.labels("http", exc.problem.reason).inc()
        raise exc.error from None
    if decoded.problems:
        await refuse(
            uow,
            device,
            decoded.problems,
            transport="http",
            settings=settings,
            metrics=metrics,
            total=len(decoded.problems),
        )
    result = await ingest_readings(
        uow=uow,
        principal=principal,
        device_id=device_id,
        readings=decoded.readings,
        batch=decoded.batch,
        settings=settings,
        metrics=metrics,
        devices=devices,
        writer=writer,
    )
    if record_key is not None:
        await cache.set(
            record_key,
            orjson.dumps({"digest": digest, "result": result.model_dump()}),
            ttl_seconds=settings.ingest.idempotency_ttl_seconds,
        )
    return result


def device_principal(device: DeviceRef) -> DevicePrincipal:
    """Act as a device found in the directory rather than by its token (MQTT, file uploads,
    where the broker or the object store has already authenticated it)."""
    return DevicePrincipal(
        device_id=device.id,
        organisation_id=device.organisation_id,
        patient_id=device.patient_id,
        patient_since=device.patient_since,
    )


async def refuse(
    uow: UnitOfWork,
    device: DevicePrincipal,
    problems: Sequence[Problem],
    *,
    transport: str,
    settings: Settings,
    metrics: Metrics,
    total: int,
) -> None:
    """Keep the refused readings in quarantine, count them, and refuse the whole request."""
    await keep_refused(uow, device, problems, transport=transport, settings=settings)
    for problem in problems:
        metrics.readings_rejected.labels(transport, problem.reason).inc()
    errors = [problem.error for problem in problems]
    raise Invalid(
        f"{len(errors)} problem(s) in the readings; none of the {total} were stored",
        errors=errors,
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
