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
from collections.abc import Mapping
from typing import Any

from medcloud.ingest.intake import Intake, Transport
from medcloud.ingest.service import device_principal
from medcloud.ingest.upload_files import (
    MAX_NAME_BYTES,
    PROCESSED,
    QUARANTINE,
    REPORT_SUFFIX,
    UPLOADS,
    Aside,
    NotAnUpload,
    Outcome,
    UploadOutcome,
    object_created_event,
    object_key,
    read_upload,
    record_outcome,
    store_location,
)
from medcloud.platform.clock import Clock
from medcloud.platform.errors import Invalid
from medcloud.platform.objects import MAX_KEY_BYTES, ObjectNotFound, ObjectStore


async def process_event(
    event: Mapping[str, Any],
    *,
    objects: ObjectStore,
    intake: Intake,
    clock: Clock,
) -> list[UploadOutcome]:
    """Process every object an S3 event announces, one after the other."""
    bucket, prefix = store_location(intake.settings)
    outcomes = []
    for record in event.get("Records") or ():
        try:
            key = object_key(record, bucket=bucket, prefix=prefix)
        except NotAnUpload as exc:
            raw = str(((record.get("s3") or {}).get("object") or {}).get("key", ""))
            outcome = UploadOutcome(raw, Outcome.IGNORED, reason=str(exc))
            record_outcome(intake.metrics, outcome)
            outcomes.append(outcome)
            continue
        outcomes.append(
            await process_upload(
                key,
                objects=objects,
                intake=intake,
                clock=clock,
            )
        )
    return outcomes


async def process_upload(
    key: str,
    *,
    objects: ObjectStore,
    intake: Intake,
    clock: Clock,
) -> UploadOutcome:
    """Store the readings of one uploaded file whole, or quarantine the file with a report."""
    try:
        outcome = await _process(
            key,
            objects=objects,
            intake=intake,
            clock=clock,
        )
    except Exception as exc:  # noqa: BLE001  (the file stays; the next event or poll retries)
        outcome = UploadOutcome(key, Outcome.FAILED, reason=type(exc).__name__)
    record_outcome(intake.metrics, outcome)
    return outcome


async def _process(
    key: str,
    *,
    objects: ObjectStore,
    intake: Intake,
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
    settings = intake.settings
    aside = Aside(objects, clock, key, rest, settings.ingest.quarantine_max_per_request)
    if not name:
        return await aside(
            Outcome.REJECTED, None, "the key names no device: uploads/{device}/{file}"
        )
    ref = await intake.devices.get(device_id)
    if ref is None:
        return await aside(Outcome.REJECTED, device_id, "unknown device")
    if ref.decommissioned:
        return await aside(Outcome.REJECTED, device_id, "the device is decommissioned")
    decoded = await read_upload(objects, key, name, settings)
    if decoded is None:
        return UploadOutcome(key, Outcome.MISSING, device_id, reason="processed or deleted already")
    # The object store let only this device's gateway write under its prefix.
    device = device_principal(ref)
    try:
        result = await intake.receive(
            device, device_id, decoded, transport=Transport.UPLOAD, alone=True
        )
    except Invalid as refusal:
        # Kept in the quarantine table (GET /api/v1/quarantine) as HTTP keeps what it refuses.
        reason = f"{len(refusal.errors)} problem(s) in the file; none of its readings were stored"
        readings = len(decoded.readings)
        return await aside(Outcome.QUARANTINED, device_id, reason, refusal.errors, readings)
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


async def watch_uploads(
    *,
    objects: ObjectStore,
    intake: Intake,
    clock: Clock,
    stop: asyncio.Event,
) -> None:
    """Look under `uploads/` every `upload_poll_seconds` and process each file as its
    ObjectCreated event would be: the embedded stand-in for S3 event notifications."""
    settings = intake.settings
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
                intake=intake,
                clock=clock,
            )
            if any(outcome.outcome is Outcome.IGNORED for outcome in outcomes):
                ignored.add(key)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll)
