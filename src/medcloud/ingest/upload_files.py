"""Uploaded files in object storage: their keys, S3 events, formats, outcomes and reports.

What `uploads.py` needs around the ingest use case to take a file from object storage and put
it where it belongs afterwards: `processed/`, or `quarantine/` beside a report of why.
"""

from __future__ import annotations

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
from medcloud.ingest.decode import Decoded, Problem, decode_or_explain
from medcloud.platform.clock import Clock
from medcloud.platform.errors import FieldError
from medcloud.platform.metrics import Metrics
from medcloud.platform.objects import (
    InvalidKey,
    ObjectNotFound,
    ObjectStore,
    ObjectTooLarge,
    check_key,
    parse_s3_url,
)

log = structlog.get_logger("medcloud.ingest.uploads")

UPLOADS = "uploads/"
PROCESSED = "processed/"
QUARANTINE = "quarantine/"
REPORT_SUFFIX = ".report.json"
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


def object_key(
    record: Mapping[str, Any], *, bucket: str | None, prefix: str, under: str = UPLOADS
) -> str:
    """Return the store key of the object `under` a folder that an S3 event record announces
    created; raise NotAnUpload for any other."""
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
    if not key.startswith(under):
        raise NotAnUpload(f"not under {under}")
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


@dataclass(frozen=True)
class Aside:
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


def record_outcome(metrics: Metrics, outcome: UploadOutcome) -> None:
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


async def read_upload(
    objects: ObjectStore, key: str, name: str, settings: Settings
) -> Decoded | None:
    """Read and decode an uploaded file (None: it is gone); what cannot be read is a problem."""
    kind = file_format(name)
    if kind is None:
        error = FieldError("file", "name it *.json, *.ndjson, *.json.gz or *.ndjson.gz")
        return Decoded([], False, [Problem(error, name, "unsupported")])
    limit = settings.ingest.upload_max_bytes
    try:
        body = await objects.read_bytes(key, max_bytes=limit)
    except ObjectNotFound:
        return None
    except ObjectTooLarge:
        return Decoded(
            [], False, [Problem(FieldError("file", f"over {limit} bytes"), name, "too_large")]
        )
    content_type, encoding = kind
    return decode_or_explain(
        body,
        content_type=content_type,
        content_encoding=encoding,
        max_inflated_bytes=settings.ingest.max_decompressed_bytes,
        max_readings=settings.max_batch_readings,
        field="file",
        fragment=lambda: name,
    )
