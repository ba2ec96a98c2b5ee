"""Queries on the audit context's tables. Repositories never commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Row, and_, exists, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.audit.chain import RECORD_FIELDS, Entry, Record, Seal
from medcloud.audit.models import AuditCheckpoint, AuditEntry, AuditHead

# An arbitrary constant naming the lock that serialises appends to the chain on PostgreSQL.
CHAIN_LOCK_ID = 0x6D6564617564_01
HEAD_ID = 1
ENTRY = AuditEntry.__table__


@dataclass(frozen=True)
class EntryFilter:
    """Which of an organisation's entries to read."""

    organisation_id: str
    actor_id: str | None = None
    patient_id: str | None = None
    action: str | None = None
    outcome: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None


async def lock_chain(session: AsyncSession) -> None:
    """Hold the append lock until the transaction ends (SQLite's BEGIN IMMEDIATE already does)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": CHAIN_LOCK_ID})


async def use_snapshot(session: AsyncSession) -> None:
    """Make every later query of `session` read one consistent snapshot.

    SQLite's read transaction is a snapshot from its first read on; PostgreSQL's default READ
    COMMITTED takes a new one per statement, so ask for REPEATABLE READ before the first query.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.connection(
            execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        )


async def has_event(session: AsyncSession, event_id: str) -> bool:
    """Tell whether the event is already in the chain."""
    return bool(await session.scalar(select(exists().where(AuditEntry.event_id == event_id))))


async def present_events(session: AsyncSession, event_ids: Sequence[str]) -> set[str]:
    """Return which of these events are already in the chain."""
    rows = await session.scalars(
        select(AuditEntry.event_id).where(AuditEntry.event_id.in_(event_ids))
    )
    return set(rows.all())


async def head(session: AsyncSession) -> Seal | None:
    """Return the signed head, if any."""
    row = await session.scalar(select(AuditHead).where(AuditHead.id == HEAD_ID))
    return None if row is None else _seal(row)


async def last_entry(session: AsyncSession) -> Entry | None:
    """Return the entry at the highest position."""
    result = await session.execute(select(ENTRY).order_by(AuditEntry.position.desc()).limit(1))
    row = result.first()
    return None if row is None else to_entry(row)


async def last_checkpoint(session: AsyncSession) -> Seal | None:
    """Return the checkpoint at the highest position."""
    row = await session.scalar(
        select(AuditCheckpoint).order_by(AuditCheckpoint.position.desc()).limit(1)
    )
    return None if row is None else _seal(row)


def add_entry(session: AsyncSession, entry: Entry) -> None:
    """Append `entry`."""
    record = entry.record
    session.add(
        AuditEntry(
            position=entry.position,
            event_id=record.event_id,
            organisation_id=record.organisation_id,
            occurred_at=record.occurred_at,
            recorded_at=record.recorded_at,
            actor_type=record.actor_type,
            actor_id=record.actor_id,
            action=record.action,
            object_type=record.object_type,
            object_id=record.object_id,
            patient_id=record.patient_id,
            outcome=record.outcome,
            source_ip=record.source_ip,
            request_id=record.request_id,
            detail=record.detail,
            prev_hash=entry.prev_hash,
            hash=entry.hash,
        )
    )


def add_checkpoint(session: AsyncSession, seal: Seal) -> None:
    """Append a checkpoint."""
    session.add(
        AuditCheckpoint(
            position=seal.position,
            hash=seal.hash,
            signed_at=seal.signed_at,
            key_id=seal.key_id,
            signature=seal.signature,
        )
    )


async def save_head(session: AsyncSession, seal: Seal) -> None:
    """Make `seal` the head of the chain."""
    values = {
        "position": seal.position,
        "hash": seal.hash,
        "signed_at": seal.signed_at,
        "key_id": seal.key_id,
        "signature": seal.signature,
    }
    # One statement where the head exists, as it does after the first append: every append
    # holds the chain's lock, so no other writer comes between the update and the insert.
    updated = await session.execute(update(AuditHead).where(AuditHead.id == HEAD_ID).values(values))
    if cast(CursorResult[Any], updated).rowcount == 0:
        session.add(AuditHead(id=HEAD_ID, **values))


async def entries_after(session: AsyncSession, position: int, *, limit: int) -> list[Entry]:
    """Return up to `limit` entries after `position`, in position order."""
    # Plain rows rather than ORM objects: a long verification must not fill the identity map.
    result = await session.execute(
        select(ENTRY)
        .where(AuditEntry.position > position)
        .order_by(AuditEntry.position)
        .limit(limit)
    )
    return [to_entry(row) for row in result]


async def checkpoints_between(
    session: AsyncSession, after: int, up_to: int | None, *, limit: int | None = None
) -> list[Seal]:
    """Return checkpoints with `after < position <= up_to` (no upper bound for None), in order."""
    query = select(AuditCheckpoint).where(AuditCheckpoint.position > after)
    if up_to is not None:
        query = query.where(AuditCheckpoint.position <= up_to)
    query = query.order_by(AuditCheckpoint.position).limit(limit)
    return [_seal(row) for row in await session.scalars(query)]


async def page(
    session: AsyncSession,
    where: EntryFilter,
    *,
    limit: int,
    after: tuple[dt.datetime, int] | None,
) -> Sequence[Row[Any]]:
    """Return matching entries, newest first, after an (occurred_at, position) cursor."""
    query = select(ENTRY).where(AuditEntry.organisation_id == where.organisation_id)
    if where.actor_id is not None:
        query = query.where(AuditEntry.actor_id == where.actor_id)
    if where.patient_id is not None:
        query = query.where(AuditEntry.patient_id == where.patient_id)
    if where.action is not None:
        query = query.where(AuditEntry.action == where.action)
    if where.outcome is not None:
        query = query.where(AuditEntry.outcome == where.outcome)
    if where.start is not None:
        query = query.where(AuditEntry.occurred_at >= where.start)
    if where.end is not None:
        query = query.where(AuditEntry.occurred_at < where.end)
    if after is not None:
        occurred_at, position = after
        query = query.where(
            or_(
                AuditEntry.occurred_at < occurred_at,
                and_(AuditEntry.occurred_at == occurred_at, AuditEntry.position < position),
            )
        )
    query = query.order_by(AuditEntry.occurred_at.desc(), AuditEntry.position.desc()).limit(limit)
    return (await session.execute(query)).all()


def to_entry(row: Row[Any]) -> Entry:
    """Return the chain's view of a stored entry."""
    record = Record(**{name: getattr(row, name) for name in RECORD_FIELDS})
    return Entry(position=row.position, record=record, prev_hash=row.prev_hash, hash=row.hash)


def _seal(row: AuditCheckpoint | AuditHead) -> Seal:
    return Seal(
        position=row.position,
        hash=row.hash,
        signed_at=row.signed_at,
        key_id=row.key_id,
        signature=row.signature,
    )
