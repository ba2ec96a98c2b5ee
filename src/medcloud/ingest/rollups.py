"""Minute, five-minute and hour rollups of readings: kept by the writer as it stores readings,
and read by charts, which take whole buckets from them and only ragged ends from readings."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ARRAY,
    REAL,
    BigInteger,
    DateTime,
    Double,
    Float,
    Integer,
    Interval,
    bindparam,
    cast,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from medcloud.ingest.models import ROLLUP_WIDTHS, Reading, ReadingRollup
from medcloud.ingest.repository import Row
from medcloud.platform.db import dialect_name

_ROLLUP_COLUMNS = ("series_id", "width", "bucket_start")
_ROLLUP_UPSERT = text(
    """
    INSERT INTO reading_rollup AS r (series_id, width, bucket_start, low, high, total, count)
    SELECT * FROM unnest(:series_id, :width, :bucket_start, :low, :high, :total, :count)
    ON CONFLICT (series_id, width, bucket_start) DO UPDATE SET
        low = least(r.low, excluded.low),
        high = greatest(r.high, excluded.high),
        total = r.total + excluded.total,
        count = r.count + excluded.count
    """
).bindparams(
    bindparam("series_id", type_=ARRAY(Integer())),
    bindparam("width", type_=ARRAY(Integer())),
    bindparam("bucket_start", type_=ARRAY(DateTime(timezone=True))),
    bindparam("low", type_=ARRAY(REAL())),
    bindparam("high", type_=ARRAY(REAL())),
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
    """Each minute's and hour's low, high, total and count of the rows, per series, in key
    order (so concurrent batches lock buckets in one order)."""
    narrowest, *wider = ROLLUP_WIDTHS
    folds: Folds = {}
    # Every stored reading passes here: it is folded into its narrowest bucket only, inline,
    # and each wider width is folded from the one before (each divides the next).
    for row in rows:
        second = int(row.timestamp.timestamp())
        value = row.value
        key = (row.series_id, narrowest, second - second % narrowest)
        bucket = folds.get(key)
        if bucket is None:
            folds[key] = [value, value, value, 1]
            continue
        if value < bucket[0]:
            bucket[0] = value
        elif value > bucket[1]:
            bucket[1] = value
        bucket[2] += value
        bucket[3] += 1
    finer = list(folds.items())
    for width in wider:
        coarser: Folds = {}
        for (series_id, _width, start), (low, high, total, count) in finer:
            _fold(coarser, (series_id, width, start - start % width), low, high, total, int(count))
        folds.update(coarser)
        finer = list(coarser.items())
    return [
        {
            "series_id": series_id,
            "width": width,
            "bucket_start": dt.datetime.fromtimestamp(start, dt.UTC),
            "low": low,
            "high": high,
            "total": total,
            "count": int(count),
        }
        for (series_id, width, start), (low, high, total, count) in sorted(folds.items())
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


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _bucket_of(
    session: AsyncSession, column: Any, bucket_seconds: int
) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
    """What to group a time column by into buckets of `bucket_seconds`, and the bucket number
    (whole `bucket_seconds` since the epoch) of each group."""
    if dialect_name(session) == "postgresql":
        # date_bin works on the timestamp itself; extract(epoch) would make a numeric of every
        # row first, which doubled the cost of a week's chart. The number is made per group.
        binned = func.date_bin(
            literal(dt.timedelta(seconds=bucket_seconds), Interval()), column, literal(_EPOCH)
        )
        return binned, cast(func.date_part("epoch", binned), BigInteger) // bucket_seconds
    # SQLite keeps the UTC timestamp as text; strftime('%s') reads it as seconds since the epoch.
    number = cast(func.strftime("%s", column), Integer) // bucket_seconds
    return number, number


Buckets = list[tuple[str, int, float, float, float, int]]


def rollup_width(bucket_seconds: int) -> int | None:
    """The widest rollup that tiles buckets of `bucket_seconds`, or None."""
    fitting = [width for width in ROLLUP_WIDTHS if bucket_seconds % width == 0]
    return max(fitting) if fitting else None


async def buckets(
    session: AsyncSession,
    series: Mapping[int, str],
    *,
    start: dt.datetime,
    end: dt.datetime,
    bucket_seconds: int,
) -> Buckets:
    """Return (type, bucket number, min, max, avg, count) of the readings of `series`
    (id → type) in [start, end), bucket numbers counting whole `bucket_seconds` since the epoch.

    Where rollups tile the buckets, the whole minutes or hours of the range come from them and
    only its ragged ends from the readings themselves; otherwise every reading is read.
    """
    width = rollup_width(bucket_seconds)
    inner_start = _ceil(start, bucket_seconds)
    inner_end = _floor(end, bucket_seconds)
    if width is None or inner_start >= inner_end or not series:
        return await raw_buckets(
            session, series, start=start, end=end, bucket_seconds=bucket_seconds
        )
    folds: Folds = {}
    await _fold_grouped(
        session,
        folds,
        series,
        time=ReadingRollup.bucket_start,
        of_series=ReadingRollup.series_id,
        aggregates=(
            func.min(ReadingRollup.low),
            func.max(ReadingRollup.high),
            func.sum(ReadingRollup.total),
            func.sum(ReadingRollup.count),
        ),
        where=(
            ReadingRollup.width == width,
            ReadingRollup.bucket_start >= inner_start,
            ReadingRollup.bucket_start < inner_end,
        ),
        bucket_seconds=bucket_seconds,
    )
    for edge_start, edge_end in ((start, inner_start), (inner_end, end)):
        if edge_start < edge_end:
            await _fold_readings(session, folds, series, edge_start, edge_end, bucket_seconds)
    return _listed(folds)


async def raw_buckets(
    session: AsyncSession,
    series: Mapping[int, str],
    *,
    start: dt.datetime,
    end: dt.datetime,
    bucket_seconds: int,
) -> Buckets:
    """(type, bucket number, min, max, avg, count) of the readings of `series` in [start, end),
    read from every reading."""
    folds: Folds = {}
    if series:
        await _fold_readings(session, folds, series, start, end, bucket_seconds)
    return _listed(folds)


async def _fold_readings(
    session: AsyncSession,
    folds: Folds,
    series: Mapping[int, str],
    start: dt.datetime,
    end: dt.datetime,
    bucket_seconds: int,
) -> None:
    await _fold_grouped(
        session,
        folds,
        series,
        time=Reading.timestamp,
        of_series=Reading.series_id,
        aggregates=(
            func.min(Reading.value),
            func.max(Reading.value),
            func.sum(cast(Reading.value, Double())),
            func.count(),
        ),
        where=(Reading.timestamp >= start, Reading.timestamp < end),
        bucket_seconds=bucket_seconds,
    )


async def _fold_grouped(
    session: AsyncSession,
    folds: Folds,
    series: Mapping[int, str],
    *,
    time: Any,
    of_series: Any,
    aggregates: tuple[ColumnElement[Any], ...],
    where: tuple[ColumnElement[bool], ...],
    bucket_seconds: int,
) -> None:
    """Add up, per series and bucket number, the low, high, total and count `aggregates` select
    from readings or rollups in the database, then fold them into `folds` by type (a device's
    readings of one type may belong to several patients' series)."""
    group, number = _bucket_of(session, time, bucket_seconds)
    query = (
        select(of_series, number, *aggregates)
        .where(of_series.in_(sorted(series)), *where)
        .group_by(of_series, group)
    )
    for series_id, bucket, low, high, total, count in (await session.execute(query)).all():
        key = (series[series_id], int(bucket))
        _fold(folds, key, float(low), float(high), float(total), int(count))


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
