"""The readings store: what a stored reading costs on disk, and what clinicians' reads cost.

Starts a deployment on a new database, registers `--devices` monitors, each on a patient of
its own since before the range (the API assigns from now on, so the run dates the assignments
back in its own database), and loads `--days` of their 1 Hz vitals (four types) through the
batched HTTP API, as a gateway replaying its buffer would. Then it times, `--repeat` times
each, the reads a clinician makes all day:

- `chart_7d`: the last seven days of one device as a chart (`GET …/data/buckets`);
- `page`: a page of 1,000 readings of one device ending at a random instant of the range
  (`GET …/data?start&end&limit=1000`, newest first);
- `latest`: a patient's newest value of every type (`GET /api/v1/readings/latest/{patient}`).

Readings are stored as if they had arrived live (`--backfill`: as a late backfill, every one
more than a day old flagged with its clock drift, which costs 8 bytes a reading).

Prints one JSON object: `bytes_per_reading` (every partition's heap, indexes and TOAST, with
the series and rollups, over the readings stored), `load_readings_per_s`, and `*_p50_ms` /
`*_p99_ms` of each read.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import random
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.deployment import (
    admin_headers,
    free_port,
    medcloud,
    medcloud_env,
    own_database,
    process,
    register_monitors,
    wait_ready,
)
from bench.figures import percentile_ms

SQLITE = "sqlite:///"
TYPES = {"heart_rate": 72.0, "spo2": 97.0, "respiratory_rate": 16.0, "temperature": 36.8}
PAGE = 1000


def vitals(start: dt.datetime, seconds: int, rng: random.Random) -> list[dict[str, Any]]:
    """`seconds` instants of the four vitals from `start`, one a second, plausibly noisy."""
    return [
        {
            "timestamp": (start + dt.timedelta(seconds=i)).isoformat(),
            "measurements": {
                code: round(base + rng.uniform(-2, 2) * (0.05 if code == "temperature" else 1), 2)
                for code, base in TYPES.items()
            },
        }
        for i in range(seconds)
    ]


async def load(
    client: httpx.AsyncClient, fleet: list[dict[str, Any]], start: dt.datetime, seconds: int
) -> int:
    """Send every device's vitals of [start, start + seconds) in batches; return readings."""
    rng = random.Random(7)
    chunk = 900  # instants per request: 3,600 readings

    async def device_load(device: dict[str, Any]) -> int:
        headers = {"Authorization": f"Bearer {device['token']}"}
        sent = 0
        for offset in range(0, seconds, chunk):
            batch = vitals(start + dt.timedelta(seconds=offset), min(chunk, seconds - offset), rng)
            for _ in range(100):
                answer = await client.post(
                    f"/api/v1/devices/{device['id']}/data",
                    json={"readings": batch},
                    headers=headers,
                )
                if answer.status_code != 503:
                    break
                await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
            answer.raise_for_status()
            sent += len(batch) * len(TYPES)
        return sent

    senders = asyncio.Semaphore(4)

    async def limited(device: dict[str, Any]) -> int:
        async with senders:
            return await device_load(device)

    return sum(await asyncio.gather(*(limited(device) for device in fleet)))


async def backdate_assignments(dsn: str, since: dt.datetime) -> None:
    """Date the monitors' assignments back to `since`, in this run's own database: the API
    assigns from now on, and readings taken before an assignment belong to no patient, which
    no clinician's scoped read would show."""
    if dsn.startswith(SQLITE):
        # The text form SQLAlchemy keeps UTC datetimes in on SQLite.
        text = since.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        with contextlib.closing(sqlite3.connect(dsn.removeprefix(SQLITE), timeout=30)) as db:
            db.execute("UPDATE device_assignment SET started_at = ?", (text,))
            db.commit()
        return
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("UPDATE device_assignment SET started_at = $1", since)
    finally:
        await connection.close()


async def footprint(dsn: str) -> tuple[int, int]:
    """(bytes, rows) of the readings table over all its partitions, with the series and the
    rollups that serve it."""
    if dsn.startswith(SQLITE):
        return _sqlite_footprint(dsn.removeprefix(SQLITE))
    connection = await asyncpg.connect(dsn)
    try:
        size = await connection.fetchval(
            "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) "
            "FROM pg_partition_tree('reading')"
        ) + await connection.fetchval(
            "SELECT pg_total_relation_size('reading_rollup') "
            "+ pg_total_relation_size('reading_series')"
        )
        rows = await connection.fetchval("SELECT count(*) FROM reading")
        return int(size), int(rows)
    finally:
        await connection.close()


async def settle(dsn: str) -> None:
    """Write the load's dirty pages out before reads are timed. A bulk load leaves gigabytes
    for the next checkpoint, whose writes can stall the reads' commits for a while (right
    after 17 million readings, latest values had p50 27 ms and p99 350 ms); a hospital's
    steady state never holds such a backlog. SQLite's log was checkpointed by `footprint`."""
    if dsn.startswith(SQLITE):
        return
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()


def _sqlite_footprint(path: str) -> tuple[int, int]:
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = int(db.execute("SELECT count(*) FROM reading").fetchone()[0])
        try:  # the pages of the three tables and their indexes, where SQLite can tell
            size = db.execute(
                "SELECT sum(pgsize) FROM dbstat WHERE name IN "
                "('reading', 'reading_rollup', 'reading_series') OR tbl_name IN "
                "('reading', 'reading_rollup', 'reading_series')"
            ).fetchone()[0]
        except sqlite3.OperationalError:  # built without dbstat: the whole file
            size = Path(path).stat().st_size
        return int(size or 0), rows


async def timed(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    answer = await client.get(url, headers=headers)
    elapsed = time.perf_counter() - started
    answer.raise_for_status()
    return elapsed


async def measure(args: argparse.Namespace, base: str, dsn: str) -> dict[str, Any]:
    """Load the fleet's days, then time the reads; return the figures."""
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        headers = await admin_headers(client)
        fleet = await register_monitors(base, args.devices)
        seconds = int(args.days * 86_400)
        end = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=1)
        start = end - dt.timedelta(seconds=seconds)
        await backdate_assignments(dsn, start - dt.timedelta(days=1))
        loading = time.perf_counter()
        loaded = await load(client, fleet, start, seconds)
        load_seconds = time.perf_counter() - loading
        size, rows = await footprint(dsn)
        await settle(dsn)

        rng = random.Random(11)
        chart, page, latest = [], [], []
        for _ in range(args.repeat):
            device = rng.choice(fleet)
            # Seven days however many were loaded: the chart a clinician opens for a week.
            week_start = end + dt.timedelta(minutes=1) - dt.timedelta(days=7)
            span = {
                "start": week_start.isoformat(),
                "end": (end + dt.timedelta(minutes=1)).isoformat(),
            }
            chart.append(
                await timed(
                    client,
                    f"/api/v1/devices/{device['id']}/data/buckets?{httpx.QueryParams(span)}",
                    headers,
                )
            )
            at = start + dt.timedelta(seconds=rng.randrange(PAGE // len(TYPES), seconds))
            window = {"start": start.isoformat(), "end": at.isoformat(), "limit": str(PAGE)}
            page.append(
                await timed(
                    client,
                    f"/api/v1/devices/{device['id']}/data?{httpx.QueryParams(window)}",
                    headers,
                )
            )
            latest.append(
                await timed(client, f"/api/v1/readings/latest/{device['patient_id']}", headers)
            )
    return {
        "benchmark": "store",
        "deployment": args.deployment,
        "devices": args.devices,
        "days": args.days,
        "readings_stored": rows,
        "load_seconds": round(load_seconds, 1),
        "load_readings_per_s": round(loaded / load_seconds),
        "stored_as": "backfill" if args.backfill else "live",
        "bytes_per_reading": round(size / rows, 1) if rows else None,
        "table_mb": round(size / 2**20, 1),
        "repeat": args.repeat,
        "chart_7d_p50_ms": percentile_ms(chart, 0.50),
        "chart_7d_p99_ms": percentile_ms(chart, 0.99),
        "page_p50_ms": percentile_ms(page, 0.50),
        "page_p99_ms": percentile_ms(page, 0.99),
        "latest_p50_ms": percentile_ms(latest, 0.50),
        "latest_p99_ms": percentile_ms(latest, 0.99),
    }


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(
        prog="medcloud bench store",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--repeat", type=int, default=100, help="times each read is made")
    parser.add_argument(
        "--deployment",
        choices=("postgres", "embedded"),
        default="postgres",
        help="PostgreSQL (a database of the run's own) or the embedded SQLite file",
    )
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL server to create the run's database on",
    )
    parser.add_argument(
        "--backfill",
        action="store_true",
        help="store the readings as a late backfill (each flagged with its clock drift) "
        "rather than as readings that arrived live",
    )
    parser.add_argument(
        "--env",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="an extra MEDCLOUD_* setting for the deployment",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark on a deployment of its own and print its JSON."""
    args = parse(argv)
    with contextlib.ExitStack() as stack:
        var, dsn = own_database(stack, args.deployment, args.postgres)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        extra = dict(args.env or [])
        if not args.backfill:
            # A live week arrives as it is measured; loading it at once must not make every
            # reading more than a day old a drifted one.
            drift = str(int((args.days + 1) * 86_400))
            extra.setdefault("MEDCLOUD_INGEST__MAX_PAST_DRIFT_SECONDS", drift)
        env = medcloud_env(var, dsn, **extra)
        stack.enter_context(
            process(medcloud("serve", "--port", str(port)), env, var.parent / "serve.log")
        )
        wait_ready(base)
        result = asyncio.run(measure(args, base, dsn))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
