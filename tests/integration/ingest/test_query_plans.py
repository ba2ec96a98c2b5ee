"""The readings store's hot reads, EXPLAINed on PostgreSQL over three days of one monitor at 1 Hz.

Each read must walk a primary key and never sort the readings of its range: a page, a chart or
a latest value then costs the same at the end of a year as on the first day. The statements
are the ones the application sends, caught as it sends them, and explained with their own
parameters after the planner's statistics are refreshed, as the writer refreshes them after a
bulk load.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from medcloud.ingest import repository, rollups
from medcloud.ingest.directory import SqlReadingHistory
from medcloud.ingest.queries import chart_bucket
from medcloud.platform.catalogue import CATALOGUE
from tests.support.client import Api, now

pytestmark = [pytest.mark.services, pytest.mark.parametrize("backend", ["services"])]

TYPES = ("heart_rate", "spo2", "respiratory_rate", "temperature")
DAYS = 3
PATIENT = "p-hot-reads"


def walk(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from walk(child)


def reads_readings(node: dict[str, Any]) -> bool:
    relation = str(node.get("Relation Name", ""))
    return relation.startswith("reading") and relation != "reading_series"


def raw_readings_only(node: dict[str, Any]) -> bool:
    relations = {str(n["Relation Name"]) for n in walk(node) if reads_readings(n)}
    return bool(relations) and not any(r.startswith("reading_rollup") for r in relations)


def unbounded_read(node: dict[str, Any]) -> bool:
    """Whether `node` reads readings or rollups other than through a LIMIT."""
    if reads_readings(node):
        return True
    return any(
        unbounded_read(child) for child in node.get("Plans", []) if child["Node Type"] != "Limit"
    )


def outline(plan: dict[str, Any], depth: int = 0) -> str:
    """The plan's nodes, one a line: what a failure shows."""
    line = "  " * depth + " ".join(
        str(part)
        for part in (
            plan["Node Type"],
            plan.get("Relation Name", ""),
            plan.get("Index Name", ""),
            plan.get("Sort Key", ""),
            f"rows={plan.get('Plan Rows')}",
        )
        if part
    )
    return "\n".join([line, *(outline(child, depth + 1) for child in plan.get("Plans", []))])


def faults(plan: dict[str, Any], empty: set[str]) -> list[str]:
    """What in a plan costs the whole range: a scan that no index drives (a bitmap heap scan
    reads the pages an index found, in page order: fine for an aggregate), or a sort of
    readings or rollups that no LIMIT bounds."""
    found = []
    grouping = {
        id(child)
        for node in walk(plan)
        if node["Node Type"] == "Aggregate"
        for child in node.get("Plans", [])
        if child["Node Type"] in ("Sort", "Incremental Sort") and raw_readings_only(child)
    }
    for node in walk(plan):
        kind = node["Node Type"]
        if id(node) in grouping:
            # Grouping raw readings into a chart's buckets: raw readings are only read for a
            # short range (buckets under a minute) or a ragged end under one bucket.
            continue
        if (
            reads_readings(node)
            and node["Relation Name"] not in empty
            and kind
            not in (
                "Index Scan",
                "Index Only Scan",
                "Bitmap Heap Scan",
            )
        ):
            found.append(f"{kind} on {node['Relation Name']}")
        if kind in ("Sort", "Incremental Sort") and unbounded_read(node):
            found.append(f"{kind} by {node.get('Sort Key')} over a range")
    return found


async def test_every_hot_read_walks_a_primary_key_and_sorts_no_range(api: Api, alice: str) -> None:
    device = await api.register_device(alice)
    runtime = api.app.state.runtime
    end = now().replace(microsecond=0)
    start = end - dt.timedelta(days=DAYS)
    organisation_id = (await runtime.devices.get(device["id"])).organisation_id
    async with runtime.write_sessions() as session, session.begin():
        series = await repository.make_series(
            session, [(device["id"], code, PATIENT, organisation_id) for code in TYPES]
        )
        # A week of 1 Hz vitals, as the writer stores them, and their rollups.
        await session.execute(
            text(
                'INSERT INTO reading ("timestamp", series_id, value) '
                "SELECT CAST(:start AS timestamptz) + make_interval(secs => s), id, 60 + s % 40 "
                "FROM generate_series(0, :seconds - 1) s, unnest(CAST(:ids AS integer[])) id "
                "ORDER BY 2, 1"
            ),
            {"start": start, "seconds": DAYS * 86_400, "ids": sorted(series.values())},
        )
        for width, unit in ((60, "minute"), (3600, "hour")):
            rollup = (
                "INSERT INTO reading_rollup "  # noqa: S608  (constants only)
                "(series_id, width, bucket_start, low, high, total, count) "
                f"SELECT series_id, {width}, date_trunc('{unit}', \"timestamp\", 'UTC'), "
                "min(value), max(value), sum(value), count(*) FROM reading GROUP BY 1, 3"
            )
            await session.execute(text(rollup))
        # Other monitors' rollups, so that one device's are a part of the table, as they are.
        await session.execute(
            text(
                "INSERT INTO reading_rollup "
                "(series_id, width, bucket_start, low, high, total, count) "
                "SELECT other, 60, date_trunc('minute', CAST(:start AS timestamptz)) "
                "+ make_interval(mins => m), 60, 70, 3900, 60 "
                "FROM generate_series(0, :minutes - 1) m, generate_series(1000, 1039) other"
            ),
            {"start": start, "minutes": DAYS * 1440},
        )
    async with runtime.database.writer.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("ANALYZE reading, reading_rollup, reading_series"))

    sent: list[tuple[str, Any, bool]] = []
    whole_window = False

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "reading" in statement:
            sent.append((statement, parameters, whole_window))

    engine = runtime.database.reader.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        async with runtime.read_sessions() as session:
            of_device = await repository.device_series(session, device["id"], None)
            middle = start + dt.timedelta(days=DAYS / 2)
            first = await repository.page(
                session, of_device, start=start, end=middle, limit=1001, after=None
            )
            after = (first[-1].timestamp, first[-1].series_id)
            await repository.page(
                session, of_device, start=start, end=middle, limit=1001, after=after
            )
            await repository.page(session, of_device, start=None, end=None, limit=11, after=None)
            size = chart_bucket(round((end - start).total_seconds() / 600))
            await rollups.buckets(session, of_device, start=start, end=end, bucket_seconds=size)
            await repository.latest_per_type(session, organisation_id, PATIENT, sorted(CATALOGUE))
        history = SqlReadingHistory(runtime.read_sessions)
        await history.patients(organisation_id, end - dt.timedelta(hours=1), end)
        # A model's window is read whole, not a page of it: the planner may read the window's
        # pages by the index in page order and sort them, which costs the window, not the table.
        whole_window = True
        await history.series(PATIENT, "heart_rate", end - dt.timedelta(hours=6), end)
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert len(sent) >= 8
    async with runtime.database.reader.connect() as connection:
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        # Months ahead hold nothing yet: scanning an empty partition whole costs nothing.
        empty = {
            str(name)
            for name in await driver.fetchval(
                "SELECT array_agg(relname) FROM pg_class "
                "WHERE relname LIKE 'reading%' AND relkind = 'r' AND relpages = 0"
            )
        }
        for statement, parameters, window in sent:
            explained = await driver.fetchval(
                f"EXPLAIN (FORMAT JSON) {statement}", *(parameters or ())
            )
            # The connection decodes JSON itself where a codec is set.
            plans = json.loads(explained) if isinstance(explained, str) else explained
            plan = plans[0]["Plan"]
            found = [f for f in faults(plan, empty) if not (window and f.startswith("Sort"))]
            assert not found, f"{statement}\n{outline(plan)}"
