"""Wire models of the audit context."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from medcloud.platform.audit import Outcome
from medcloud.platform.types import Timestamp


class ExportFormat(StrEnum):
    """How the listing answers: one page of JSON, or every match streamed as a file."""

    JSON = "json"
    CSV = "csv"
    NDJSON = "ndjson"


class AuditQuery(BaseModel):
    """Filters, paging and format of an audit log listing."""

    actor_id: str | None = Field(default=None, max_length=200)
    """Only entries by this actor (a user id, for people)."""
    patient_id: str | None = Field(default=None, max_length=200)
    """Only entries about this patient."""
    action: str | None = Field(default=None, max_length=200)
    """Only entries of this dotted action, e.g. `readings.read`."""
    outcome: Outcome | None = None
    """Only entries with this outcome."""
    start: Timestamp | None = None
    """Only entries that occurred at or after this time."""
    end: Timestamp | None = None
    """Only entries that occurred before this time."""
    limit: int = Field(default=100, ge=1, le=1000)
    """Entries per page (JSON only; exports stream every match)."""
    cursor: str | None = Field(default=None, max_length=200)
    """Where the previous page ended (JSON only)."""
    format: ExportFormat = ExportFormat.JSON
    """`json` for a page; `csv` or `ndjson` for a download of every match."""


class AuditEntryRead(BaseModel):
    """An audit entry with its place in the chain.

    It repeats the fields of `chain.Record` on purpose: this is the API's contract, that is what
    a hash covers, and neither should change because the other does.
    """

    # pylint: disable=duplicate-code

    position: int
    event_id: str
    organisation_id: str
    occurred_at: dt.datetime
    recorded_at: dt.datetime
    actor_type: str
    actor_id: str | None
    action: str
    object_type: str | None
    object_id: str | None
    patient_id: str | None
    outcome: str
    source_ip: str | None
    request_id: str | None
    detail: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    """Audit entries, newest first."""

    items: list[AuditEntryRead]
    next_cursor: str | None


class VerificationRead(BaseModel):
    """Whether the chain is intact and, if not, the first position found wrong and why."""

    ok: bool
    entries_checked: int
    """Entries verified before the first bad position: all of them when the chain is intact."""
    first_bad_position: int | None
    reason: str | None
