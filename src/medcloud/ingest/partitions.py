"""Monthly range partitions of the readings table on PostgreSQL: one for every month readings
arrive in, made before they are written, and dropped whole when the month expires.

Partitions are named `reading_pYYYY_MM`. Upkeep creates the coming months ahead; a reading of
any other month (a device replaying a years-old buffer, a backfill) has its month made by
`MonthlyPartitions.ensure` before it is written, in a short transaction of its own, so retention
can drop it whole like any other. The default partition stays as a safety net that upkeep
empties into monthly ones. SQLite keeps one plain table and needs none of this.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Sequence
from typing import Protocol

import structlog
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from medcloud.config import Settings
from medcloud.ingest.repository import Row
from medcloud.platform.uow import UnitOfWorkFactory

log = structlog.get_logger(__name__)

_NAME = re.compile(r"^reading_p(\d{4})_(\d{2})$")
_LOCK_ID = 0x6D63696E67657374  # serialises partition maintenance across processes


def month_start(at: dt.datetime) -> dt.datetime:
    """Return the first instant (UTC) of `at`'s month."""
    at = at.astimezone(dt.UTC)
    return dt.datetime(at.year, at.month, 1, tzinfo=dt.UTC)


def add_months(month: dt.datetime, months: int) -> dt.datetime:
    """Return the first instant of the month `months` after `month`."""
    index = month.year * 12 + month.month - 1 + months
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC)


def partition_name(month: dt.datetime) -> str:
    """Name the partition of `month`."""
    return f"reading_p{month.year:04d}_{month.month:02d}"


def create_statement(month: dt.datetime) -> str:
    """Return the DDL creating `month`'s partition (idempotent)."""
    upper = add_months(month, 1)
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(month)} PARTITION OF reading "
        f"FOR VALUES FROM ('{month.isoformat()}') TO ('{upper.isoformat()}')"
    )


def ensure_partitions_sync(connection: Connection, first: dt.datetime, last: dt.datetime) -> int:
    """Create every monthly partition from `first`'s month to `last`'s; return how many exist."""
    month, count = month_start(first), 0
    while month <= last:
        connection.execute(text(create_statement(month)))
        month, count = add_months(month, 1), count + 1
    return count


async def create_month(connection: AsyncConnection, month: dt.datetime) -> bool:
    """Make `month`'s partition unless it exists, moving in its readings from the default
    partition; True if it was made. Runs in the caller's transaction, which it serialises with
    every other process's partition changes."""
    await connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
    name = partition_name(month)
    if await connection.scalar(text("SELECT to_regclass(:name)"), {"name": name}) is not None:
        return False
    bounds = {"lower": month, "upper": add_months(month, 1)}
    # A partition cannot be made over rows the default partition holds for its range, so they
    # step aside for the moment it takes, all within this transaction.
    await connection.execute(text("CREATE TEMP TABLE reading_moving (LIKE reading) ON COMMIT DROP"))
    moved = await connection.execute(
        text(
            "WITH moved AS (DELETE FROM reading_default "
            'WHERE "timestamp" >= :lower AND "timestamp" < :upper RETURNING *) '
            "INSERT INTO reading_moving SELECT * FROM moved"
        ),
        bounds,
    )
    await connection.execute(text(create_statement(month)))
    if moved.rowcount:
        await connection.execute(text("INSERT INTO reading SELECT * FROM reading_moving"))
    await connection.execute(text("DROP TABLE reading_moving"))
    return True


async def maintain(
    connection: AsyncConnection, *, now: dt.datetime, ahead_months: int, retention_days: int
) -> tuple[list[str], list[str]]:
    """Create partitions up to `ahead_months` ahead, give readings left in the default partition
    their month's, and drop those wholly past retention.

    Returns (created, dropped) partition names. Runs in the caller's transaction.
    """
    await connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
    dropped: list[str] = []
    horizon = now - dt.timedelta(days=retention_days) if retention_days > 0 else None
    if horizon is not None:
        for name in sorted(await _partitions(connection)):
            match = _NAME.match(name)
            if match is None:
                continue
            start = dt.datetime(int(match[1]), int(match[2]), 1, tzinfo=dt.UTC)
            if add_months(start, 1) <= horizon:
                # The name is built from two integers above, never from input.
                await connection.execute(text(f"DROP TABLE IF EXISTS {name}"))
                # The month's rollups go with its readings: a chart never shows what is gone.
                await connection.execute(
                    text(
                        "DELETE FROM reading_rollup "
                        "WHERE bucket_start >= :lower AND bucket_start < :upper"
                    ),
                    {"lower": start, "upper": add_months(start, 1)},
                )
                dropped.append(name)
        await connection.execute(
            text('DELETE FROM reading_default WHERE "timestamp" < :horizon'), {"horizon": horizon}
        )
    months = {add_months(month_start(now), ahead) for ahead in range(ahead_months + 1)}
    strays = await connection.scalars(
        text("SELECT DISTINCT date_trunc('month', \"timestamp\", 'UTC') FROM reading_default")
    )
    months.update(month_start(stray) for stray in strays)
    created = [
        partition_name(month) for month in sorted(months) if await create_month(connection, month)
    ]
    return created, dropped


async def _partitions(connection: AsyncConnection) -> set[str]:
    found = await connection.scalars(
        text(
            "SELECT c.relname FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'reading'"
        )
    )
    return set(found.all())


FIRST_ANALYZE_ROWS = 10_000
"""Rows written into a month before its partition's statistics are first refreshed; then again
each time the rows written since double (at least every `MAX_ANALYZE_ROWS`)."""
MAX_ANALYZE_ROWS = 1_000_000


class Partitions(Protocol):
    """Make sure the months of rows about to be written have partitions, and that the planner
    knows how many rows they hold."""

    async def ensure(self, rows: Sequence[Row]) -> None:
        """Make any missing month's partition (committed) before the rows are written."""
        ...

    def written(self, rows: Sequence[Row]) -> None:
        """Count rows written; refresh a partition's statistics in the background when due."""
        ...


class NoPartitions:
    """SQLite: one plain table."""

    async def ensure(self, rows: Sequence[Row]) -> None:
        """Nothing to make."""

    def written(self, rows: Sequence[Row]) -> None:
        """SQLite plans without per-partition statistics."""


class MonthlyPartitions:
    """PostgreSQL: a month's partition is made the first time this process writes into it."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory
        self._known: set[dt.datetime] = set()
        self._written: dict[dt.datetime, int] = {}
        self._analyze_at: dict[dt.datetime, int] = {}
        self._analyzing: set[asyncio.Task[None]] = set()

    def written(self, rows: Sequence[Row]) -> None:
        """Count rows written per month; when a month's count reaches its next mark, ANALYZE its
        partition and the rollups in the background.

        The planner's row estimates come from these statistics. After a bulk load (a gateway
        replaying a week) they are far off until refreshed, and autovacuum, which would refresh
        them, may be off or a minute away; with them wrong, a page of a week's readings was
        planned as if the partition were empty and took 100 ms instead of 7.
        """
        if not rows:
            return
        month = month_start(rows[0].timestamp)
        count = self._written.get(month, 0) + len(rows)
        self._written[month] = count
        if count < self._analyze_at.get(month, FIRST_ANALYZE_ROWS):
            return
        self._analyze_at[month] = min(2 * count, count + MAX_ANALYZE_ROWS)
        task = asyncio.create_task(self._analyze(partition_name(month)))
        self._analyzing.add(task)
        task.add_done_callback(self._analyzing.discard)

    async def _analyze(self, name: str) -> None:
        try:
            async with self._uow_factory() as uow:
                connection = await uow.session.connection()
                # The name is built from two integers, never from input.
                await connection.execute(text(f"ANALYZE {name}, reading_rollup"))
                await uow.commit()
        except DBAPIError as exc:  # a partition retention dropped meanwhile: nothing to do
            log.warning("ingest.partition.analyze_failed", partition=name, error=type(exc).__name__)

    async def ensure(self, rows: Sequence[Row]) -> None:
        """Make any missing month's partition, in a transaction of its own: the DDL locks the
        readings table, which the write's own transaction must not hold while it waits."""
        if not rows:
            return
        first = month_start(min(row.timestamp for row in rows))
        last = month_start(max(row.timestamp for row in rows))
        if first == last and first in self._known:
            return
        spanned = {first, last} if first == last else {month_start(r.timestamp) for r in rows}
        months = sorted(spanned - self._known)
        if not months:
            return
        async with self._uow_factory() as uow:
            connection = await uow.session.connection()
            made = [partition_name(m) for m in months if await create_month(connection, m)]
            await uow.commit()
        self._known.update(months)
        if made:
            log.info("ingest.partitions", created=made)


def partitions_for(settings: Settings, uow_factory: UnitOfWorkFactory) -> Partitions:
    """Return the partition keeper of the configured database."""
    return NoPartitions() if settings.is_sqlite else MonthlyPartitions(uow_factory)
