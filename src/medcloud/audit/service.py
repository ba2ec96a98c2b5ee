"""Use cases of the audit context: append to the chain, list and export entries, verify it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.audit import chain, repository
from medcloud.audit.keys import signer_for, verification_keys
from medcloud.audit.repository import EntryFilter
from medcloud.audit.schemas import (
    AuditEntryRead,
    AuditPage,
    AuditQuery,
    ExportFormat,
    VerificationRead,
)
from medcloud.config import Settings
from medcloud.platform.audit import AuditRecorded, audit_record
from medcloud.platform.errors import FieldError, Invalid
from medcloud.platform.paging import decode_numbered_cursor, page_of
from medcloud.platform.security import UserPrincipal
from medcloud.platform.uow import UnitOfWork

log = structlog.get_logger(__name__)

# Fixed forever: event ids derived under it are stored in the chain.
EVENT_NAMESPACE = uuid.UUID("1f0c3a52-8d4e-5b7a-9c61-2e4f6a8b0d13")
VERIFY_BATCH = 1000
EXPORT_BATCH = 1000
EXPORT_COLUMNS = ("position", *chain.RECORD_FIELDS, "prev_hash", "hash")
MEDIA_TYPES = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.NDJSON: "application/x-ndjson",
}


async def ensure_signing_key(*, settings: Settings) -> None:
    """Load the signing key at start-up, generating the key file on first use."""
    signer_for(settings)


def event_fingerprint(event: AuditRecorded) -> str:
    """Return the id an event is stored under: the same for every delivery of the same fact.

    Handlers receive the event without its envelope, so the id is derived from the content; two
    events equal in every field, `occurred_at` to the microsecond included, are one fact.
    """
    body = orjson.dumps(event.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return str(uuid.uuid5(EVENT_NAMESPACE, body.decode()))


async def append_entry(
    *, uow: UnitOfWork, event: AuditRecorded, signer: chain.Signer, checkpoint_every: int
) -> int | None:
    """Chain `event` onto the log and re-sign the head; return its position, None if present."""
    positions = await append_entries(
        uow=uow, events=[event], signer=signer, checkpoint_every=checkpoint_every
    )
    return positions[0] if positions else None


async def append_entries(
    *,
    uow: UnitOfWork,
    events: Sequence[AuditRecorded],
    signer: chain.Signer,
    checkpoint_every: int,
) -> list[int]:
    """Chain events onto the log in order, skipping those present, and sign the new head once;
    return the positions given.

    The chain takes one writer at a time (a lock per transaction): appending a batch under one
    lock keeps the log's throughput that of its transactions, not of its entries.
    """
    session = uow.session
    await repository.lock_chain(session)
    fingerprints = [event_fingerprint(event) for event in events]
    present = await repository.present_events(session, fingerprints)
    position, prev_hash = await _tail(session)
    now = uow.clock.now()
    positions: list[int] = []
    entry = None
    for event, event_id in zip(events, fingerprints, strict=True):
        if event_id in present:
            continue
        present.add(event_id)
        entry = chain.link(
            _record(event, event_id=event_id, recorded_at=now),
            position=position + 1,
            prev_hash=prev_hash,
        )
        repository.add_entry(session, entry)
        if checkpoint_every > 0 and entry.position % checkpoint_every == 0:
            repository.add_checkpoint(session, signer.seal_checkpoint(entry, at=now))
        position, prev_hash = entry.position, entry.hash
        positions.append(position)
    if entry is not None:
        await repository.save_head(session, signer.seal_head(entry, at=now))
    return positions


async def _tail(session: AsyncSession) -> tuple[int, str]:
    # The signed head, not the last row, says where the chain ends: entries removed from the
    # tail then leave a gap before the next append instead of being silently overwritten.
    head = await repository.head(session)
    if head is not None:
        return head.position, head.hash
    ends = [(0, chain.GENESIS_HASH)]
    last = await repository.last_entry(session)
    if last is not None:
        ends.append((last.position, last.hash))
    checkpoint = await repository.last_checkpoint(session)
    if checkpoint is not None:
        ends.append((checkpoint.position, checkpoint.hash))
    if len(ends) > 1:
        log.error("audit.head_missing", continuing_after=max(ends)[0])
    return max(ends)


def _record(event: AuditRecorded, *, event_id: str, recorded_at: dt.datetime) -> chain.Record:
    occurred_at = event.occurred_at
    if occurred_at.tzinfo is None:
        # Keep the entry rather than refuse it: platform clocks are UTC, so a naive time is too.
        occurred_at = occurred_at.replace(tzinfo=dt.UTC)
    return chain.Record(
        event_id=event_id,
        organisation_id=_text(event.organisation_id),
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        actor_type=event.actor_type.value,
        actor_id=_optional_text(event.actor_id),
        action=_text(event.action),
        object_type=_optional_text(event.object_type),
        object_id=_optional_text(event.object_id),
        patient_id=_optional_text(event.patient_id),
        outcome=event.outcome.value,
        source_ip=_optional_text(event.source_ip),
        request_id=_optional_text(event.request_id),
        detail=chain.canonical_detail(event.detail),
    )


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL; replacing it keeps the entry out of the dead-letter queue
    # and gives both databases the same bytes to hash.
    return value.replace("\x00", "\ufffd")


def _optional_text(value: str | None) -> str | None:
    return None if value is None else _text(value)


async def list_entries(
    *, session: AsyncSession, principal: UserPrincipal, query: AuditQuery
) -> AuditPage:
    """Return a page of the organisation's entries, newest first."""
    after = decode_numbered_cursor(query.cursor) if query.cursor else None
    rows = await repository.page(
        session, _filter(principal, query), limit=query.limit + 1, after=after
    )
    shown, next_cursor = page_of(rows, query.limit, lambda r: (r.occurred_at, r.position))
    return AuditPage(items=[_read(row) for row in shown], next_cursor=next_cursor)


@dataclass(frozen=True)
class AuditExport:
    """A download of every matching entry, produced while it is sent."""

    filename: str
    media_type: str
    chunks: AsyncIterator[bytes]


async def export_entries(
    *,
    uow: UnitOfWork,
    sessions: async_sessionmaker[AsyncSession],
    principal: UserPrincipal,
    query: AuditQuery,
) -> AuditExport:
    """Record the export in the log itself, then stream every matching entry, newest first."""
    if query.format is ExportFormat.JSON:
        raise Invalid(
            "JSON is served page by page",
            errors=[FieldError("query.format", "export as csv or ndjson")],
        )
    async with uow:
        now = uow.clock.now()
        uow.publish(
            audit_record(
                principal,
                "audit.export",
                occurred_at=now,
                object_type="audit_log",
                patient_id=query.patient_id,
                detail={"format": query.format.value},
            )
        )
        await uow.commit()
    return AuditExport(
        filename=f"audit-{now:%Y%m%dT%H%M%SZ}.{query.format.value}",
        media_type=MEDIA_TYPES[query.format],
        chunks=_stream(sessions, _filter(principal, query), query.format),
    )


async def _stream(
    sessions: async_sessionmaker[AsyncSession], where: EntryFilter, fmt: ExportFormat
) -> AsyncIterator[bytes]:
    # A session of its own: the request's dependencies may be gone while the body streams.
    async with sessions() as session:
        await repository.use_snapshot(session)
        if fmt is ExportFormat.CSV:
            yield _csv([EXPORT_COLUMNS])
        after: tuple[dt.datetime, int] | None = None
        while True:
            rows = await repository.page(session, where, limit=EXPORT_BATCH, after=after)
            if rows:
                yield _csv(map(_csv_row, rows)) if fmt is ExportFormat.CSV else _ndjson(rows)
            if len(rows) < EXPORT_BATCH:
                return
            after = (rows[-1].occurred_at, rows[-1].position)


def _csv(rows: Any) -> bytes:
    # Values are written as stored, not defused for spreadsheets, so an export can be re-hashed.
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode()


def _csv_row(row: Row[Any]) -> list[object]:
    return [_wire(getattr(row, column)) for column in EXPORT_COLUMNS]


def _ndjson(rows: Sequence[Row[Any]]) -> bytes:
    lines = []
    for row in rows:
        document = {column: _wire(getattr(row, column)) for column in EXPORT_COLUMNS}
        document["detail"] = _detail(row.detail)
        lines.append(orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE))
    return b"".join(lines)


def _wire(value: object) -> object:
    return chain.canonical_time(value) if isinstance(value, dt.datetime) else value


async def verify_chain(
    *, session: AsyncSession, settings: Settings, batch_size: int = VERIFY_BATCH
) -> VerificationRead:
    """Check the whole chain, in batches, against its hashes, checkpoints and signed head."""
    await repository.use_snapshot(session)
    verifier = chain.ChainVerifier(verification_keys(settings))
    after = 0
    while not verifier.failed:
        entries = await repository.entries_after(session, after, limit=batch_size)
        if not entries:
            break
        last = entries[-1].position
        verifier.feed(entries, await repository.checkpoints_between(session, after, last))
        after = last
    if not verifier.failed:
        # One checkpoint past the end is enough to prove the tail was removed.
        verifier.feed((), await repository.checkpoints_between(session, after, None, limit=1))
    result = verifier.finish(head=await repository.head(session))
    if result.ok:
        log.info("audit.verified", entries=result.entries_checked)
    else:
        log.error("audit.chain_broken", first_bad_position=result.first_bad_position)
    return VerificationRead(
        ok=result.ok,
        entries_checked=result.entries_checked,
        first_bad_position=result.first_bad_position,
        reason=result.reason,
    )


def _detail(text: str) -> dict[str, Any]:
    # A damaged row must not take the whole listing down; verification reports the damage.
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {"unreadable": text}


def _filter(principal: UserPrincipal, query: AuditQuery) -> EntryFilter:
    return EntryFilter(
        organisation_id=principal.organisation_id,
        actor_id=query.actor_id,
        patient_id=query.patient_id,
        action=query.action,
        outcome=None if query.outcome is None else query.outcome.value,
        start=query.start,
        end=query.end,
    )


def _read(row: Row[Any]) -> AuditEntryRead:
    return AuditEntryRead.model_validate({**row._mapping, "detail": _detail(row.detail)})
