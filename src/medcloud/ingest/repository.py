"""Queries on the ingest context's tables. Repositories never commit."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import Any, NamedTuple

import asyncpg
from sqlalchemy import (
    ARRAY,
    REAL,
    DateTime,
    Integer,
    Select,
    and_,
    bindparam,
    func,
    insert,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from medcloud.ingest.models import (
    QuarantinedReading,
    Reading,
    ReadingSeries,
)
from medcloud.platform.catalogue import UNITS
from medcloud.platform.db import dialect_name
from medcloud.platform.directory import ReadingQuery

SeriesKey = tuple[str, str, str, str]
"""What names a series: device, type, patient ('' for none) and organisation."""

MAX_DRIFT_SECONDS = 2**31 - 1


class Row(NamedTuple):
    """One reading about to be stored, with what its event and its series need to know."""

    organisation_id: str
    device_id: str
    patient_id: str | None
    type: str
    value: float
    unit: str
    timestamp: dt.datetime
    received_at: dt.datetime
    clock_drift: bool
    series_id: int = 0
    """Given by `to_rows`, from the ids `SeriesIds.of_device` found or made."""

    @property
    def key(self) -> tuple[int, dt.datetime]:
        """What makes a reading the same reading: its series and timestamp."""
        return self.series_id, self.timestamp

    @property
    def drift_seconds(self) -> int | None:
        """How far the timestamp was behind receipt, for a drifted reading; None otherwise."""
        if not self.clock_drift:
            return None
        behind = round((self.received_at - self.timestamp).total_seconds())
        return min(max(behind, 0), MAX_DRIFT_SECONDS)

    def stored(self) -> tuple[dt.datetime, int, float, int | None]:
        """The reading as `reading` holds it, in column order, so COPY takes it as it is."""
        return self.timestamp, self.series_id, self.value, self.drift_seconds


class Stored(NamedTuple):
    """One stored reading, read back with its series' type."""

    series_id: int
    type: str
    timestamp: dt.datetime
    value: float
    drift_seconds: int | None

    @property
    def unit(self) -> str:
        """The catalogue's unit, the only one stored."""
        return UNITS[self.type]

    @property
    def clock_drift(self) -> bool:
        """Whether the timestamp was far behind the reading's receipt."""
        return self.drift_seconds is not None


class Latest(NamedTuple):
    """A patient's newest reading of one type, and the device that took it."""

    type: str
    value: float
    unit: str
    timestamp: dt.datetime
    device_id: str


async def make_series(session: AsyncSession, keys: Sequence[SeriesKey]) -> dict[SeriesKey, int]:
    """Make the series not yet stored (another process may be making them too); return the id
    of each."""
    values = [
        {"device_id": d, "type": t, "patient_key": p, "organisation_id": o} for d, t, p, o in keys
    ]
    insert_into = pg_insert if dialect_name(session) == "postgresql" else sqlite.insert
    await session.execute(insert_into(ReadingSeries).on_conflict_do_nothing(), values)
    stored = await session.execute(
        select(
            ReadingSeries.device_id,
            ReadingSeries.type,
            ReadingSeries.patient_key,
            ReadingSeries.organisation_id,
            ReadingSeries.id,
        ).where(ReadingSeries.device_id.in_({device_id for device_id, *_ in keys}))
    )
    ids = {
        (device, code, patient, org): series_id for device, code, patient, org, series_id in stored
    }
    return {key: ids[key] for key in keys}


async def device_series(
    session: AsyncSession, device_id: str, patients: frozenset[str] | None
) -> dict[int, str]:
    """The type of each of a device's series, of `patients` only unless None."""
    query = select(ReadingSeries.id, ReadingSeries.type).where(ReadingSeries.device_id == device_id)
    if patients is not None:
        query = query.where(ReadingSeries.patient_key.in_(patients))
    return dict((await session.execute(query)).all())


# One statement for a whole micro-batch on PostgreSQL: arrays in, keys out. ON CONFLICT keeps
# a retried reading stored once; RETURNING names what was new so only that is published.
_UNNEST_INSERT = text(
    """
    INSERT INTO reading ("timestamp", series_id, value, drift_seconds)
    SELECT * FROM unnest(:timestamp, :series_id, :value, :drift_seconds)
    ON CONFLICT (series_id, "timestamp") DO NOTHING
    RETURNING series_id, "timestamp"
    """
).bindparams(
    bindparam("timestamp", type_=ARRAY(DateTime(timezone=True))),
    bindparam("series_id", type_=ARRAY(Integer())),
    bindparam("value", type_=ARRAY(REAL())),
    bindparam("drift_seconds", type_=ARRAY(Integer())),
)
_COLUMNS = ("timestamp", "series_id", "value", "drift_seconds")
_KEY = attrgetter("series_id", "timestamp")  # Row.key, without a property call per row


async def insert_new(session: AsyncSession, rows: Sequence[Row]) -> list[Row]:
    """Insert readings, skipping any already stored; return the newly stored ones."""
    if not rows:
        return []
    # A fixed order means concurrent batches take the primary key's locks in the same order
    # and cannot deadlock on each other.
    ordered = sorted(rows, key=_KEY)
    records = [row.stored() for row in ordered]
    if dialect_name(session) == "postgresql":
        if await _copy_unless_stored(session, records):
            return ordered
        params = dict(zip(_COLUMNS, map(list, zip(*records, strict=True)), strict=True))
        result = await session.execute(_UNNEST_INSERT, params)
        new = {(s, ts.astimezone(dt.UTC)) for s, ts in result.all()}
        return [row for row in ordered if row.key in new]
    statement = (
        sqlite.insert(Reading)
        .on_conflict_do_nothing(index_elements=["series_id", "timestamp"])
        .returning(Reading.series_id, Reading.timestamp)
    )
    found = await session.execute(
        statement, [dict(zip(_COLUMNS, record, strict=True)) for record in records]
    )
    new = {(s, ts) for s, ts in found.all()}
    return [row for row in ordered if row.key in new]


async def _copy_unless_stored(session: AsyncSession, records: Sequence[tuple[Any, ...]]) -> bool:
    """COPY the records into `reading` inside the session's transaction; tell whether it worked.

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
        await driver.copy_records_to_table("reading", records=records, columns=_COLUMNS)
    except asyncpg.UniqueViolationError:
        await session.execute(text("ROLLBACK TO SAVEPOINT reading_copy"))
        return False
    await session.execute(text("RELEASE SAVEPOINT reading_copy"))
    return True


ReadSelect = Select[int, dt.datetime, float, int | None]


def _read() -> ReadSelect:
    """Select stored readings as `Stored` wants them, less the type."""
    return select(Reading.series_id, Reading.timestamp, Reading.value, Reading.drift_seconds)


SeriesId = int | BindParameter[int]
"""A series' id, or a parameter bound to one when the statement runs."""


def in_time_order(
    series_ids: Sequence[SeriesId],
    *,
    limit: int,
    newest_first: bool = True,
    where: Callable[[SeriesId], Sequence[ColumnElement[bool]]] = lambda _series_id: (),
) -> ReadSelect:
    """One statement reading several series' readings in time order (ties: by series), at most
    `limit` of them, `where` each series' own conditions.

    Each series walks its own primary key and stops at `limit`; the union only orders what they
    returned. A single `series_id IN (...)` query would instead sort every reading of the
    range, since no index is ordered by time across series.
    """
    order = Reading.timestamp.desc() if newest_first else Reading.timestamp.asc()
    parts = [
        _read()
        .where(Reading.series_id == series_id, *where(series_id))
        .order_by(order)
        .limit(limit)
        for series_id in series_ids
    ]
    if len(parts) == 1:
        return parts[0]
    merged = union_all(*(part.subquery().select() for part in parts)).subquery()
    columns = merged.c
    in_order = (
        (columns.timestamp.desc(), columns.series_id.desc())
        if newest_first
        else (columns.timestamp.asc(), columns.series_id.asc())
    )
    return (
        select(columns.series_id, columns.timestamp, columns.value, columns.drift_seconds)
        .order_by(*in_order)
        .limit(limit)
    )


async def page(
    session: AsyncSession,
    series: Mapping[int, str],
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    limit: int,
    after: tuple[dt.datetime, int] | None,
) -> list[Stored]:
    """Return the readings of `series` (id → type) in [start, end), newest first, after a
    (timestamp, series id) cursor."""
    if not series:
        return []
    ids = sorted(series)
    # Newest first, then highest series first: at the cursor's own instant only the series
    # ordered after the cursor's are still to come.
    at_cursor = None if after is None else tuple(s >= after[1] for s in ids)
    statement = _page_statement(len(ids), start is not None, end is not None, at_cursor, limit)
    values: dict[str, Any] = {f"series_{i}": s for i, s in enumerate(ids)}
    values |= {"start": start, "end": end, "after": None if after is None else after[0]}
    found = await session.execute(statement, values)
    return [Stored(s, series[s], ts, value, drift) for s, ts, value, drift in found.all()]


@functools.lru_cache(maxsize=256)
def _page_statement(
    count: int,
    bounded_below: bool,
    bounded_above: bool,
    at_cursor: tuple[bool, ...] | None,
    limit: int,
) -> ReadSelect:
    """The page statement of one shape, built once, its values bound at execution.

    A page is a union of one subquery per series, and SQLAlchemy computes such a statement's
    cache key anew whenever it is built: about 1.5 ms a page, more than PostgreSQL takes to
    answer it (docs/benchmarks.md). Built once, the key is remembered with the statement.
    """
    series = [bindparam(f"series_{i}", type_=Integer()) for i in range(count)]

    def within(series_id: SeriesId) -> list[ColumnElement[bool]]:
        conditions = []
        if bounded_below:
            conditions.append(Reading.timestamp >= bindparam("start"))
        if bounded_above:
            conditions.append(Reading.timestamp < bindparam("end"))
        if at_cursor is not None:
            conditions.append(
                Reading.timestamp < bindparam("after")
                if at_cursor[next(i for i, s in enumerate(series) if s is series_id)]
                else Reading.timestamp <= bindparam("after")
            )
        return conditions

    return in_time_order(series, limit=limit, where=within)


class SeriesName(NamedTuple):
    """What a series' readings are: whose, of what, from which device."""

    device_id: str
    type: str
    patient_id: str | None


async def series_named(session: AsyncSession, query: ReadingQuery) -> dict[int, SeriesName]:
    """Return the series (id → name) that `query` reads, found by its patient or its device."""
    if query.patient_id is None and query.device_id is None:
        raise ValueError("a reading query names a patient or a device")
    statement = select(
        ReadingSeries.id, ReadingSeries.device_id, ReadingSeries.type, ReadingSeries.patient_key
    ).where(ReadingSeries.organisation_id == query.organisation_id)
    if query.patient_id is not None:
        statement = statement.where(ReadingSeries.patient_key == query.patient_id)
    if query.device_id is not None:
        statement = statement.where(ReadingSeries.device_id == query.device_id)
    if query.types is not None:
        statement = statement.where(ReadingSeries.type.in_(query.types))
    if query.patients is not None:
        statement = statement.where(ReadingSeries.patient_key.in_(query.patients))
    rows = await session.execute(statement)
    return {
        series_id: SeriesName(device_id, code, patient or None)
        for series_id, device_id, code, patient in rows.all()
    }


def _within(start: dt.datetime | None, end: dt.datetime | None) -> list[ColumnElement[bool]]:
    """The conditions of [start, end) on a reading's time (None: open on that side)."""
    conditions: list[ColumnElement[bool]] = []
    if start is not None:
        conditions.append(Reading.timestamp >= start)
    if end is not None:
        conditions.append(Reading.timestamp < end)
    return conditions


async def in_range(
    session: AsyncSession,
    series_ids: Sequence[int],
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    newest_first: bool,
    limit: int,
) -> list[tuple[int, dt.datetime, float]]:
    """Return up to `limit` readings of the series in [start, end), in time order (ties: by
    series), each series walking its own key."""
    if not series_ids:
        return []
    conditions = _within(start, end)
    query = in_time_order(
        sorted(series_ids),
        limit=limit,
        newest_first=newest_first,
        where=lambda _series_id: conditions,
    )
    rows = await session.execute(query)
    return [(series_id, timestamp, value) for series_id, timestamp, value, _drift in rows.all()]


async def newest_of_each(
    session: AsyncSession,
    series_ids: Sequence[int],
    *,
    per_series: int,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
) -> list[tuple[int, dt.datetime, float]]:
    """Return the newest `per_series` readings of each series in [start, end): one backward
    walk of each series' key, stopped at `per_series`."""
    if not series_ids:
        return []
    conditions = _within(start, end)
    parts = [
        select(Reading.series_id, Reading.timestamp, Reading.value)
        .where(Reading.series_id == series_id, *conditions)
        .order_by(Reading.timestamp.desc())
        .limit(per_series)
        for series_id in sorted(series_ids)
    ]
    query = parts[0] if len(parts) == 1 else union_all(*(p.subquery().select() for p in parts))
    rows = await session.execute(query)
    return [(series_id, timestamp, value) for series_id, timestamp, value in rows.all()]


async def device_types(session: AsyncSession, device_id: str) -> list[str]:
    """Return the types the device has series of, sorted."""
    rows = await session.scalars(
        select(ReadingSeries.type).where(ReadingSeries.device_id == device_id).distinct()
    )
    return sorted(rows.all())


_NEWEST = (
    select(func.max(Reading.timestamp))
    .where(Reading.series_id == ReadingSeries.id)
    .correlate(ReadingSeries)
    .scalar_subquery()
)
# Built once: the latest values are read on every bedside refresh, and building the statement
# (and its cache key) cost about as much as running it.
_LATEST = (
    select(ReadingSeries.type, ReadingSeries.device_id, Reading.timestamp, Reading.value)
    .join(Reading, and_(Reading.series_id == ReadingSeries.id, Reading.timestamp == _NEWEST))
    .where(
        ReadingSeries.patient_key == bindparam("patient_id"),
        ReadingSeries.organisation_id == bindparam("organisation_id"),
        ReadingSeries.type.in_(bindparam("types", expanding=True)),
    )
)


async def latest_per_type(
    session: AsyncSession, organisation_id: str, patient_id: str, types: Sequence[str]
) -> list[Latest]:
    """Return the newest reading of each type for a patient, whichever device took it.

    One statement: each of the patient's series finds its newest timestamp by one backward step
    down its primary key, then that reading by one probe.
    """
    found = await session.execute(
        _LATEST,
        {"patient_id": patient_id, "organisation_id": organisation_id, "types": list(types)},
    )
    latest: dict[str, Latest] = {}
    for code, device_id, timestamp, value in found.all():
        if code not in latest or latest[code].timestamp < timestamp:
            latest[code] = Latest(code, value, UNITS[code], timestamp, device_id)
    return [latest[code] for code in types if code in latest]


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
