"""The daily report function: what `medcloud reports daily` does, on an EventBridge schedule.

At 02:00 UTC it makes every report of each day owed since the last run (organisation, wards,
and patients where configured), so a night the function did not run is caught up on the next.
Each daily report is unique per scope and day: run beside a deployment's reports worker, whose
scheduler does the same, or twice, it never makes one twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from medcloud.bootstrap import bootstrap
from medcloud.config import Settings
from medcloud.reports.daily import run_once


async def make_reports(settings: Settings) -> dict[str, Any]:
    """Make the reports owed now; answer how many, and for which days."""
    runtime = bootstrap(settings)
    try:
        run = await run_once(runtime)
    finally:
        await runtime.cache.close()
        await runtime.database.dispose()
    return {"made": run.made, "days": [day.isoformat() for day in run.days]}


def handler(_event: Mapping[str, Any], _context: Any) -> dict[str, Any]:
    """Make the reports owed (settings from the environment, as AWS Lambda runs it)."""
    return asyncio.run(make_reports(Settings()))
