"""The upload function: files of readings a gateway puts in object storage, validated and stored.

A gateway puts a JSON or NDJSON file, gzip or not, under `uploads/{device_id}/{name}`. An S3
`ObjectCreated` event names it — sent by S3 itself to `handler` on AWS Lambda, or built by the
embedded watcher `watch_uploads` — and `process_upload` runs the file through the same
data-quality gate as HTTP. A good file is stored whole, in one transaction, and moved to
`processed/`; a malformed or refused one is moved to `quarantine/` beside a report, its refused
readings kept in the quarantine table. A file is never half-imported, and processing one twice
is harmless: readings are unique per (device, type, timestamp), and a file already moved on is
found missing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import orjson
import structlog

from medcloud.config import Settings
from medcloud.ingest import service
from medcloud.ingest.decode import Problem, decode_or_explain
from medcloud.platform.clock import Clock
from medcloud.platform.directory import DeviceDirectory
from medcloud.platform.errors import FieldError, Invalid
from medcloud.platform.metrics import Metrics
from medcloud.platform.objects import (
    MAX_KEY_BYTES,
    InvalidKey,
    ObjectNotFound,
    ObjectStore,
    ObjectTooLarge,
    check_key,
    parse_s3_url,
)
from medcloud.platform.uow import UnitOfWorkFactory

log = structlog.get_logger(__name__)

UPLOADS = "uploads/"
PROCESSED = "processed/"
QUARANTINE = "quarantine/"
REPORT_SUFFIX = ".report.json"
TRANSPORT = "upload"
MAX_NAME_BYTES = 200
"""Longest file name accepted, so that its report's name stays a valid key segment."""

FORMATS = (
    (".ndjson.gz", "application/x-ndjson", "gzip"),
    (".json.gz", "application/json", "gzip"),
    (".ndjson", "application/x-ndjson", None),
    (".json", "application/json", None),
)
"""File name endings read, with the content type and encoding each means."""


class Outcome(StrEnum):
    """What became of one uploaded object (the `outcome` label of `ingest_uploads_total`)."""

    STORED = "stored"
    """Every reading passed the gate and is stored; the file moved to `processed/`."""
    QUARANTINED = "quarantined"
    """The file, or a reading in it, was refused; it moved to `quarantine/` with a report."""
    REJECTED = "rejected"
    """The key names no known device; the file moved to `quarantine/` with a report."""
    MISSING = "missing"
    """No object under the key: already processed (a repeated event) or deleted."""
    IGNORED = "ignored"
    """Not an upload this function handles (another event, bucket or prefix, an odd key)."""
    FAILED = "failed"
    """A fault that may pass (database, storage); the file stays where it is, to be retried."""


@dataclass(frozen=True)
class UploadOutcome:
    """What processing one object did."""

    key: str
    outcome: Outcome
    device_id: str | None = None
    readings: int = 0
    """Readings read from the file."""
    stored: int = 0
    """Readings newly stored (the rest were stored before)."""
    duplicates: int = 0
    reason: str | None = None
    moved_to: str | None = None


class NotAnUpload(ValueError):
    """An event record this function does not handle; the message says why."""


def file_format(name: str) -> tuple[str, str | None] | None:
    """Return the content type and encoding a file name stands for, or None if unsupported."""
    lowered = name.lower()
    for ending, content_type, encoding in FORMATS:
        if lowered.endswith(ending):
            return content_type, encoding
    return None


def store_location(settings: Settings) -> tuple[str | None, str]:
    """Return the bucket (None: a local directory) and key prefix of the configured store."""
    url = settings.objects.url
    if url.startswith("s3://"):
        return parse_s3_url(url)
    return None, ""


def object_key(record: Mapping[str, Any], *, bucket: str | None, prefix: str) -> str:
    """Return the store key of the upload an S3 event record announces; raise NotAnUpload."""
    if str(record.get("eventSource", "")) not in {"aws:s3", "minio:s3"}:
        raise NotAnUpload("not an S3 event")
    if "ObjectCreated:" not in str(record.get("eventName", "")):
        raise NotAnUpload("not an ObjectCreated event")
    s3 = record.get("s3") or {}
    if bucket is not None and (s3.get("bucket") or {}).get("name") != bucket:
        raise NotAnUpload("another bucket")
    # S3 sends keys form-encoded: a space as `+`, other special characters as %XX.
    native = unquote_plus(str((s3.get("object") or {}).get("key", "")))
    if prefix:
        if not native.startswith(f"{prefix}/"):
            raise NotAnUpload("outside the store's prefix")
        native = native.removeprefix(f"{prefix}/")
    try:
        key = check_key(native)
    except InvalidKey as exc:
        raise NotAnUpload("not a valid object key") from exc
    if not key.startswith(UPLOADS):
        raise NotAnUpload("not under uploads/")
    return key


def object_created_event(
    key: str, *, bucket: str | None, prefix: str, size: int | None = None
) -> dict[str, Any]:
    """Build the S3 event announcing that the object under `key` was created."""
    native = f"{prefix}/{key}" if prefix else key
    found: dict[str, Any] = {"key": quote_plus(native, safe="/")}
    if size is not None:
        found["size"] = size
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket or "local"}, "object": found},
            }
        ]
    }


async def process_event(
    event: Mapping[str, Any],
    *,
    objects: ObjectStore,
    uow_factory: UnitOfWorkFactory,
    devices: DeviceDirectory,
    settings: Settings,
    metrics: Metrics,
    clock: Clock,
) -> list[UploadOutcome]:
    """Process every object an S3 event announces, one after the other."""
    bucket, prefix = store_location(settings)
    outcomes = []
    for record in event.get("Records") or ():
        try:
            key = object_key(record, bucket=bucket, prefix=prefix)
        except NotAnUpload as exc:
            raw = str(((record.get("s3") or {}).get("object") or {}).get("key", ""))
            outcome = UploadOutcome(raw, Outcome.IGNORED, reason=str(exc))
            _record(metrics, outcome)
            outcomes.append(outcome)
            continue
        outcomes.append(
            await process_upload(
                key,
                objects=objects,
                uow_factory=uow_factory,
                devices=devices,
                settings=settings,
                metrics=metrics,
                clock=clock,
            )
        )
    return outcomes


async def process_upload(
    key: str,
    *,
    objects: ObjectStore,
    uow_factory: UnitOfWorkFactory,
    devices: DeviceDirectory,
    settings: Settings,
    metrics: Metrics,
    clock: Clock,
) -> UploadOutcome:
    """Store the readings of one uploaded file whole, or quarantine the file with a report."""
    try:
        outcome = await _process(
            key,
            objects=objects,
            uow_factory=uow_factory,
            devices=devices,
            settings=settings,
            metrics=metrics,
            clock=clock,
        )
    except Exception as exc:  # noqa: BLE001  (the file stays; the next event or poll retries)
        outcome = UploadOutcome(key, Outcome.FAILED, reason=type(exc).__name__)
    _record(metrics, outcome)
    return outcome


async def _process(
    key: str,
    *,
    objects: ObjectStore,
    uow_factory: UnitOfWorkFactory,
    devices: DeviceDirectory,
    settings: Settings,
    metrics: Metrics,
    clock: Clock,
) -> UploadOutcome:
    if not key.startswith(UPLOADS):
        return UploadOutcome(key, Outcome.IGNORED, reason="not under uploads/")
    rest = key.removeprefix(UPLOADS)
    device_id, _, path = rest.partition("/")
    name = path.rpartition("/")[2]
    if (
        len(name.encode()) > MAX_NAME_BYTES
        or len(f"{QUARANTINE}{rest}{REPORT_SUFFIX}".encode()) > MAX_KEY_BYTES
    ):
        return UploadOutcome(key, Outcome.IGNORED, reason="the key is too long to quarantine")
    aside = _Aside(objects, clock, key, rest, settings.ingest.quarantine_max_per_request)
    if not name:
        return await aside(
            Outcome.REJECTED, None, "the key names no device: uploads/{device}/{file}"
        )
    ref = await devices.get(device_id)
    if ref is None:
        return await aside(Outcome.REJECTED, device_id, "unknown device")
    if ref.decommissioned:
        return await aside(Outcome.REJECTED, device_id, "the device is decommissioned")
    device = service.device_principal(ref)

    async def refuse(problems: Sequence[Problem], readings: int = 0) -> UploadOutcome:
        # Kept in the quarantine table (GET /api/v1/quarantine) as HTTP keeps what it refuses.
        await service.keep_refused(
            uow_factory(), device, problems, transport=TRANSPORT, settings=settings
        )
        for problem in problems:
            metrics.readings_rejected.labels(TRANSPORT, problem.reason).inc()
        reason = f"{len(problems)} problem(s) in the file; none of its readings were stored"
        errors = [problem.error for problem in problems]
        return await aside(Outcome.QUARANTINED, device_id, reason, errors, readings)

    kind = file_format(name)
    if kind is None:
        error = FieldError("file", "name it *.json, *.ndjson, *.json.gz or *.ndjson.gz")
        return await refuse([Problem(error, name, "unsupported")])
    limit = settings.ingest.upload_max_bytes
    try:
        body = await objects.read_bytes(key, max_bytes=limit)
    except ObjectNotFound:
        return UploadOutcome(key, Outcome.MISSING, device_id, reason="processed or deleted already")
    except ObjectTooLarge:
        return await refuse([Problem(FieldError("file", f"over {limit} bytes"), name, "too_large")])
    content_type, encoding = kind
    decoded = decode_or_explain(
        body,
        content_type=content_type,
        content_encoding=encoding,
        max_inflated_bytes=settings.ingest.max_decompressed_bytes,
        max_readings=settings.max_batch_readings,
        field="file",
        fragment=lambda: name,
    )
    if decoded.problems:
        return await refuse(decoded.problems, len(decoded.readings))
    try:
        result = await service.ingest_readings(
            uow=uow_factory(),
            principal=device,
            device_id=device.device_id,
            readings=decoded.readings,
            batch=decoded.batch,
            settings=settings,
            metrics=metrics,
            devices=devices,
            transport=TRANSPORT,
            # No micro-batch writer: a file is a batch already, and committing it in a
            # transaction of its own keeps "stored whole" independent of other requests.
            writer=None,
        )
    except Invalid as refusal:
        # The gate refused some readings and has kept them in the quarantine table.
        return await aside(
            Outcome.QUARANTINED, device_id, refusal.detail, refusal.errors, len(decoded.readings)
        )
    target = PROCESSED + rest
    with contextlib.suppress(ObjectNotFound):  # moved on by a concurrent run of the same event
        await objects.move(key, target)
    return UploadOutcome(
        key,
        Outcome.STORED,
        device_id,
        readings=len(decoded.readings),
        stored=result.stored,
        duplicates=result.duplicates,
        moved_to=target,
    )


@dataclass(frozen=True)
class _Aside:
    """Move an upload to `quarantine/` with a report of why."""

    objects: ObjectStore
    clock: Clock
    key: str
    rest: str
    max_errors: int
    """Errors listed in a report; the rest are only counted."""

    async def __call__(
        self,
        outcome: Outcome,
        device_id: str | None,
        reason: str,
        errors: Sequence[FieldError] = (),
        readings: int = 0,
    ) -> UploadOutcome:
        target = QUARANTINE + self.rest
        report = {
            "key": self.key,
            "moved_to": target,
            "outcome": outcome.value,
            "device_id": device_id,
            "reason": reason,
            "errors": [{"field": e.field, "message": e.message} for e in errors[: self.max_errors]],
            "problems": len(errors),
            "readings": readings,
            "quarantined_at": self.clock.now().isoformat(),
        }
        # The report first: a file in quarantine then always has one, and a retry after a
        # crash in between merely writes it again.
        await self.objects.put_bytes(
            target + REPORT_SUFFIX, orjson.dumps(report, option=orjson.OPT_INDENT_2)
        )
        with contextlib.suppress(ObjectNotFound):  # moved on by a concurrent run
            await self.objects.move(self.key, target)
        return UploadOutcome(
            self.key, outcome, device_id, readings=readings, reason=reason, moved_to=target
        )


def _record(metrics: Metrics, outcome: UploadOutcome) -> None:
    metrics.ingest_uploads.labels(outcome.outcome.value).inc()
    # The key and the reason stay out of the log: a file name is the gateway's choice and could
    # carry anything, and reasons may quote the file. Device ids are no secret.
    known = outcome.outcome is not Outcome.REJECTED  # else the id is the key's, unchecked
    fields = {
        "outcome": outcome.outcome.value,
        "device_id": outcome.device_id if known else None,
        "readings": outcome.readings,
        "stored": outcome.stored,
        "duplicates": outcome.duplicates,
    }
    if outcome.outcome is Outcome.FAILED:
        log.warning("ingest.upload", error=outcome.reason, **fields)
    else:
        log.info("ingest.upload", **fields)


def summarise(outcomes: Sequence[UploadOutcome]) -> dict[str, Any]:
    """Count the outcomes and list them, as the upload function's answer."""
    counts = Counter(outcome.outcome for outcome in outcomes)
    return {
        "records": len(outcomes),
        **{outcome.value: counts[outcome] for outcome in Outcome},
        "results": [asdict(outcome) for outcome in outcomes],
    }


async def watch_uploads(
    *,
    objects: ObjectStore,
    uow_factory: UnitOfWorkFactory,
    devices: DeviceDirectory,
    settings: Settings,
    metrics: Metrics,
    clock: Clock,
    stop: asyncio.Event,
) -> None:
    """Look under `uploads/` every `upload_poll_seconds` and process each file as its
    ObjectCreated event would be: the embedded stand-in for S3 event notifications."""
    poll = settings.ingest.upload_poll_seconds
    if poll <= 0:
        await stop.wait()  # returning would have the supervisor start it again at once
        return
    bucket, prefix = store_location(settings)
    ignored: set[str] = set()  # not handled now, nor on the next poll: left to an operator
    while not stop.is_set():
        for key in await objects.list(UPLOADS):
            if stop.is_set():
                break
            if key in ignored:
                continue
            outcomes = await process_event(
                object_created_event(key, bucket=bucket, prefix=prefix),
                objects=objects,
                uow_factory=uow_factory,
                devices=devices,
                settings=settings,
                metrics=metrics,
                clock=clock,
            )
            if any(outcome.outcome is Outcome.IGNORED for outcome in outcomes):
                ignored.add(key)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll)
