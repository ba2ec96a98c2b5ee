"""Monthly range partitions of the readings table on PostgreSQL: created ahead, dropped when old.

Partitions are named `reading_pYYYY_MM`; a default partition catches readings of months that
have none (a device replaying a years-old buffer), so no valid reading is ever refused for want
of a partition. SQLite keeps one plain table and needs none of this.
"""

from __future__ import annotations

import datetime as dt
import re

import structlog
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

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


async def maintain(
    connection: AsyncConnection, *, now: dt.datetime, ahead_months: int, retention_days: int
) -> tuple[list[str], list[str]]:
    """Create partitions up to `ahead_months` ahead and drop those wholly past retention.

    Returns (created, dropped) partition names. Runs in the caller's transaction.
    """
    await connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
    existing = set(
        (
            await connection.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i "
                    "JOIN pg_class c ON c.oid = i.inhrelid "
                    "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'reading'"
                )
            )
        )
        .scalars()
        .all()
    )
    created: list[str] = []
    month = month_start(now)
    for _ in range(ahead_months + 1):
        name = partition_name(month)
        if name not in existing:
            try:
                async with connection.begin_nested():
                    await connection.execute(text(create_statement(month)))
                created.append(name)
            except DBAPIError as exc:
                # Rows of that month already sit in the default partition; they stay there.
                log.warning(
                    "ingest.partition.create_failed", partition=name, error=type(exc).__name__
                )
        month = add_months(month, 1)
    dropped: list[str] = []
    if retention_days > 0:
        horizon = now - dt.timedelta(days=retention_days)
        for name in sorted(existing):
            match = _NAME.match(name)
            if match is None:
                continue
            start = dt.datetime(int(match[1]), int(match[2]), 1, tzinfo=dt.UTC)
            if add_months(start, 1) <= horizon:
                # The name is built from two integers above, never from input.
                await connection.execute(text(f"DROP TABLE IF EXISTS {name}"))
                dropped.append(name)
        # Readings of months without a partition of their own expire row by row.
        await connection.execute(
            text('DELETE FROM reading_default WHERE "timestamp" < :horizon'), {"horizon": horizon}
        )
    return created, dropped
