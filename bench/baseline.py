"""The yardstick a run is judged against: a raw PostgreSQL COPY of the same rows."""

from __future__ import annotations

import tempfile
import time

import asyncpg

COLUMNS = ["timestamp", "series_id", "value", "drift_seconds"]


async def copy_rate(dsn: str) -> tuple[int, float]:
    """COPY every row medcloud stored in `reading` into a fresh table of the same shape (same
    columns, same indexes, same id sequence) on one connection; return (rows, rows per second).

    The rows are exported first in PostgreSQL's binary format, so the timed part is only the
    server taking them in: no client-side encoding, the fastest way rows can enter that table.
    """
    connection = await asyncpg.connect(dsn)
    columns = ", ".join(f'"{c}"' for c in COLUMNS)
    try:
        await connection.execute("CREATE TABLE bench_copy (LIKE reading INCLUDING ALL)")
        with tempfile.TemporaryFile() as spool:
            await connection.copy_from_query(
                f"SELECT {columns} FROM reading",  # noqa: S608  (constant column list)
                output=spool,
                format="binary",
            )
            spool.seek(0)
            started = time.perf_counter()
            status = await connection.copy_to_table(
                "bench_copy", source=spool, columns=COLUMNS, format="binary"
            )
            elapsed = time.perf_counter() - started
        rows = int(status.split()[-1])
        return rows, rows / elapsed if elapsed else 0.0
    finally:
        await connection.execute("DROP TABLE IF EXISTS bench_copy")
        await connection.close()
