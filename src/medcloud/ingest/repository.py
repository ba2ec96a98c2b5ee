"""Queries on the ingest context's tables. Repositories never commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, NamedTuple

import asyncpg
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Integer,
    String,
    and_,
    bindparam,
    cast,
    func,
    insert,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from medcloud.ingest.models import ROLLUP_WIDTHS, QuarantinedReading, Reading, ReadingRollup
from medcloud.platform.db import dialect_name


class Row(NamedTuple):
    """One reading as stored: a tuple in column order, so COPY takes it as it is."""

    organisation_id: str
    device_id: str
    patient_id: str | None
    type: str
    value: float
    unit: str
    timestamp: dt.datetime
    received_at: dt.datetime
    clock_drift: bool

    @property
    def key(self) -> tuple[str, str, dt.datetime]:
        """What makes a reading the same reading: device, type and timestamp."""
        return self.device_id, self.type, self.timestamp


# One statement for a whole micro-batch on PostgreSQL: arrays in, rows out. ON CONFLICT keeps
# a retried reading stored once; RETURNING names what was new so only that is published.
_UNNEST_INSERT = text(
    """
    INSERT INTO reading (organisation_id, device_id, patient_id, type, value, unit,
                         "timestamp", received_at, clock_drift)
    SELECT * FROM unnest(:organisation_id, :device_id, :patient_id, :type, :value, :unit,
                         :timestamp, :received_at, :clock_drift)
    ON CONFLICT (device_id, type, "timestamp") DO NOTHING
    RETURNING device_id, type, value, "timestamp"
    """
).bindparams(
    bindparam("organisation_id", type_=ARRAY(String())),
    bindparam("device_id", type_=ARRAY(String())),
    bindparam("patient_id", type_=ARRAY(String())),
    bindparam("type", type_=ARRAY(String())),
    bindparam("value", type_=ARRAY(Float())),
    bindparam("unit", type_=ARRAY(String())),
    bindparam("timestamp", type_=ARRAY(DateTime(timezone=True))),
    bindparam("received_at", type_=ARRAY(DateTime(timezone=True))),
    bindparam("clock_drift", type_=ARRAY(Boolean())),
)
_COLUMNS = Row._fields


async def insert_new(session: AsyncSession, rows: Sequence[Row]) -> list[Row]:
    """Insert readings, skipping any already stored; return the newly stored ones."""
    if not rows:
        return []
    # A fixed order means concurrent batches take the unique index's locks in the same order
    # and cannot deadlock on each other.
    ordered = sorted(rows, key=lambda row: row.key)
    if dialect_name(session) == "postgresql":
        if await _copy_unless_stored(session, ordered):
            return ordered
        params = dict(zip(_COLUMNS, map(list, zip(*ordered, strict=True)), strict=True))
        result = await session.execute(_UNNEST_INSERT, params)
        new = {(d, t, ts.astimezone(dt.UTC)) for d, t, _v, ts in result.all()}
        return [row for row in ordered if row.key in new]
    statement = (
        sqlite.insert(Reading)
        .on_conflict_do_nothing(index_elements=["device_id", "type", "timestamp"])
        .returning(Reading.device_id, Reading.type, Reading.timestamp)
    )
    found = await session.execute(statement, [row._asdict() for row in ordered])
    new = {(d, t, ts) for d, t, ts in found.all()}
    return [row for row in ordered if row.key in new]


async def _copy_unless_stored(session: AsyncSession, rows: Sequence[Row]) -> bool:
    """COPY the rows into `reading` inside the session's transaction; tell whether it worked.

    COPY is the fastest way in, but it has no ON CONFLICT: one reading stored before (a retry)
    fails the whole COPY. That rolls back to a savepoint and answers False, and the caller
    falls back to the INSERT that skips stored readings. Retries are rare, so most batches
    take the fast path.
    """
    # The savepoint also makes SQLAlchemy begin the transaction before the driver-level COPY.
    await session.execute(text("SAVEPOINT reading_copy"))
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    try:
        await driver.copy_records_to_table("reading", records=rows, columns=_COLUMNS)
    except asyncpg.UniqueViolationError:
        await session.execute(text("ROLLBACK TO SAVEPOINT reading_copy"))
        return False
    await session.execute(text("RELEASE SAVEPOINT reading_copy"))
    return True


_ROLLUP_COLUMNS = ("device_id", "width", "bucket_start", "type", "patient_key")
_ROLLUP_UPSERT = text(
    """
    INSERT INTO reading_rollup AS r
        (device_id, width, bucket_start, type, patient_key, low, high, total, count)
    SELECT * FROM unnest(:device_id, :width, :bucket_start, :type, :patient_key,
                         :low, :high, :total, :count)
    ON CONFLICT (device_id, width, bucket_start, type, patient_key) DO UPDATE SET
        low = least(r.low, excluded.low),
        high = greatest(r.high, excluded.high),
        total = r.total + excluded.total,
        count = r.count + excluded.count
    """
).bindparams(
    bindparam("device_id", type_=ARRAY(String())),
    bindparam("width", type_=ARRAY(Integer())),
    bindparam("bucket_start", type_=ARRAY(DateTime(timezone=True))),
    bindparam("type", type_=ARRAY(String())),
    bindparam("patient_key", type_=ARRAY(String())),
    bindparam("low", type_=ARRAY(Float())),
    bindparam("high", type_=ARRAY(Float())),
    bindparam("total", type_=ARRAY(Float())),
    bindparam("count", type_=ARRAY(Integer())),
)


Folds = dict[Any, list[float]]
"""Low, high, total and count, by key: buckets being added up."""


def _fold(folds: Folds, key: Any, low: float, high: float, total: float, count: int) -> None:
    bucket = folds.get(key)
    if bucket is None:
        folds[key] = [low, high, total, count]
        return
    bucket[0] = min(bucket[0], low)
    bucket[1] = max(bucket[1], high)
    bucket[2] += total
    bucket[3] += count


def rolled_up(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Each minute's and hour's low, high, total and count of the rows, per device, type and
    patient, in key order (so concurrent batches lock buckets in one order)."""
    buckets: Folds = {}
    for row in rows:
        second = int(row.timestamp.timestamp())
        patient_key = row.patient_id or ""
        value = row.value
        for width in ROLLUP_WIDTHS:
            key = (row.device_id, width, second - second % width, row.type, patient_key)
            _fold(buckets, key, value, value, value, 1)
    return [
        {
            "device_id": device_id,
            "width": width,
            "bucket_start": dt.datetime.fromtimestamp(start, dt.UTC),
            "type": code,
            "patient_key": patient_key,
            "low": low,
            "high": high,
            "total": total,
            "count": int(count),
        }
        for (device_id, width, start, code, patient_key), (low, high, total, count) in sorted(
            buckets.items()
        )
    ]


async def add_to_rollups(session: AsyncSession, rows: Sequence[Row]) -> None:
    """Add newly stored readings to their minute and hour rollups."""
    values = rolled_up(rows)
    if not values:
        return
    if dialect_name(session) == "postgresql":
        columns = {name: [value[name] for value in values] for name in values[0]}
        await session.execute(_ROLLUP_UPSERT, columns)
        return
    statement = sqlite.insert(ReadingRollup)
    statement = statement.on_conflict_do_update(
        index_elements=list(_ROLLUP_COLUMNS),
        set_={
            "low": func.min(ReadingRollup.low, statement.excluded.low),
            "high": func.max(ReadingRollup.high, statement.excluded.high),
            "total": ReadingRollup.total + statement.excluded.total,
            "count": ReadingRollup.count + statement.excluded.count,
        },
    )
    await session.execute(statement, values)


async def page(
    session: AsyncSession,
    device_id: str,
    *,
    patients: frozenset[str] | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    limit: int,
    after: tuple[dt.datetime, int] | None,
) -> Sequence[Reading]:
    """Return a device's readings in [start, end), newest first, after a (timestamp, id) cursor."""
    query = select(Reading).where(Reading.device_id == device_id)
    if patients is not None:
        query = query.where(Reading.patient_id.in_(patients))
    if start is not None:
        query = query.where(Reading.timestamp >= start)
    if end is not None:
        query = query.where(Reading.timestamp < end)
    if after is not None:
        timestamp, reading_id = after
        query = query.where(
            or_(
                Reading.timestamp < timestamp,
                and_(Reading.timestamp == timestamp, Reading.id < reading_id),
            )
        )
    query = query.order_by(Reading.timestamp.desc(), Reading.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def latest_per_type(
    session: AsyncSession, organisation_id: str, patient_id: str, types: Sequence[str]
) -> list[Reading]:
    """Return the newest reading of each type for a patient (one index probe per type)."""
    found: list[Reading] = []
    for code in types:
        query = (
            select(Reading)
            .where(
                Reading.patient_id == patient_id,
                Reading.type == code,
                Reading.organisation_id == organisation_id,
            )
            .order_by(Reading.timestamp.desc())
            .limit(1)
        )
        reading = (await session.scalars(query)).first()
        if reading is not None:
            found.append(reading)
    return found


def _bucket_of(session: AsyncSession, column: Any, bucket_seconds: int) -> ColumnElement[Any]:
    """The bucket number of a time column: whole `bucket_seconds` since the epoch."""
    if dialect_name(session) == "postgresql":
        epoch: ColumnElement[Any] = func.extract("epoch", column)
        return cast(func.floor(epoch / bucket_seconds), BigInteger)
    # SQLite keeps the UTC timestamp as text; strftime('%s') reads it as seconds since the epoch.
    return cast(func.strftime("%s", column), Integer) // bucket_seconds


Buckets = list[tuple[str, int, float, float, float, int]]


def rollup_width(bucket_seconds: int) -> int | None:
    """The widest rollup that tiles buckets of `bucket_seconds`, or None."""
    fitting = [width for width in ROLLUP_WIDTHS if bucket_seconds % width == 0]
    return max(fitting) if fitting else None


async def buckets(
    session: AsyncSession,
    device_id: str,
    *,
    patients: frozenset[str] | None,
    start: dt.datetime,
    end: dt.datetime,
    bucket_seconds: int,
) -> Buckets:
    """Return (type, bucket number, min, max, avg, count) of a device's readings in [start, end),
    bucket numbers counting whole `bucket_seconds` since the epoch.

    Where rollups tile the buckets, the whole minutes or hours of the range come from them and
    only its ragged ends from the readings themselves; otherwise every reading is read.
    """
    width = rollup_width(bucket_seconds)
    inner_start = _ceil(start, width) if width else end
    inner_end = _floor(end, width) if width else end
    if width is None or inner_start >= inner_end:
        return await raw_buckets(
            session,
            device_id,
            patients=patients,
            start=start,
            end=end,
            bucket_seconds=bucket_seconds,
        )
    folds: Folds = {}
    await _fold_grouped(
        session,
        folds,
        time=ReadingRollup.bucket_start,
        code=ReadingRollup.type,
        aggregates=(
            func.min(ReadingRollup.low),
            func.max(ReadingRollup.high),
            func.sum(ReadingRollup.total),
            func.sum(ReadingRollup.count),
        ),
        where=(
            ReadingRollup.device_id == device_id,
            ReadingRollup.width == width,
            ReadingRollup.bucket_start >= inner_start,
            ReadingRollup.bucket_start < inner_end,
        ),
        patient=ReadingRollup.patient_key,
        patients=patients,
        bucket_seconds=bucket_seconds,
    )
    for edge_start, edge_end in ((start, inner_start), (inner_end, end)):
        if edge_start < edge_end:
            await _fold_readings(
                session, folds, device_id, patients, edge_start, edge_end, bucket_seconds
            )
    return _listed(folds)


async def raw_buckets(
    session: AsyncSession,
    device_id: str,
    *,
    patients: frozenset[str] | None,
    start: dt.datetime,
    end: dt.datetime,
    bucket_seconds: int,
) -> Buckets:
    """(type, bucket number, min, max, avg, count) of a device's readings in [start, end), read
    from every reading."""
    folds: Folds = {}
    await _fold_readings(session, folds, device_id, patients, start, end, bucket_seconds)
    return _listed(folds)


async def _fold_readings(
    session: AsyncSession,
    folds: Folds,
    device_id: str,
    patients: frozenset[str] | None,
    start: dt.datetime,
    end: dt.datetime,
    bucket_seconds: int,
) -> None:
    await _fold_grouped(
        session,
        folds,
        time=Reading.timestamp,
        code=Reading.type,
        aggregates=(
            func.min(Reading.value),
            func.max(Reading.value),
            func.sum(Reading.value),
            func.count(),
        ),
        where=(
            Reading.device_id == device_id,
            Reading.timestamp >= start,
            Reading.timestamp < end,
        ),
        patient=Reading.patient_id,
        patients=patients,
        bucket_seconds=bucket_seconds,
    )


async def _fold_grouped(
    session: AsyncSession,
    folds: Folds,
    *,
    time: Any,
    code: Any,
    aggregates: tuple[ColumnElement[Any], ...],
    where: tuple[ColumnElement[bool], ...],
    patient: Any,
    patients: frozenset[str] | None,
    bucket_seconds: int,
) -> None:
    """Add up, per type and bucket number, the low, high, total and count `aggregates` select
    from readings or rollups in the database, then fold them into `folds`."""
    number = _bucket_of(session, time, bucket_seconds).label("number")
    query = select(code, number, *aggregates).where(*where).group_by(code, number)
    if patients is not None:
        query = query.where(patient.in_(patients))
    for kind, bucket, low, high, total, count in (await session.execute(query)).all():
        _fold(folds, (kind, int(bucket)), float(low), float(high), float(total), int(count))


def _listed(folds: Folds) -> Buckets:
    """Buckets oldest first, then by type, each with its mean."""
    return [
        (kind, number, low, high, total / count, int(count))
        for (kind, number), (low, high, total, count) in sorted(
            folds.items(), key=lambda item: (item[0][1], item[0][0])
        )
    ]


def _floor(at: dt.datetime, seconds: int) -> dt.datetime:
    epoch = int(at.timestamp() // seconds) * seconds
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _ceil(at: dt.datetime, seconds: int) -> dt.datetime:
    floor = _floor(at, seconds)
    return floor if floor == at else floor + dt.timedelta(seconds=seconds)


async def quarantine(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Keep refused readings with their reasons."""
    if rows:
        await session.execute(insert(QuarantinedReading), list(rows))


async def quarantined(
    session: AsyncSession,
    organisation_id: str,
    *,
    device_id: str | None,
    patients: frozenset[str] | None,
    limit: int,
    before_id: int | None,
) -> Sequence[QuarantinedReading]:
    """Return refused readings of an organisation, newest first, before an id cursor."""
    query = select(QuarantinedReading).where(QuarantinedReading.organisation_id == organisation_id)
    if device_id is not None:
        query = query.where(QuarantinedReading.device_id == device_id)
    if patients is not None:
        query = query.where(QuarantinedReading.patient_id.in_(patients))
    if before_id is not None:
        query = query.where(QuarantinedReading.id < before_id)
    query = query.order_by(QuarantinedReading.id.desc()).limit(limit)
    return (await session.scalars(query)).all()
