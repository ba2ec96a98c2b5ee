"""The upload function: files of readings put in object storage, processed on ObjectCreated."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from medcloud.bootstrap import bootstrap
from medcloud.config import Settings
from medcloud.ingest.intake import Intake
from medcloud.ingest.upload_files import Outcome, summarise
from medcloud.ingest.uploads import process_event


class UploadsFailed(Exception):
    """Some objects of the event could not be processed and should be retried."""


async def handle_event(event: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """Build a runtime for `settings`, process the event's objects, close what was opened.

    Events committed here leave through the outbox relay of the running workers, as those of
    any other process do; a bus is not even connected.
    """
    runtime = bootstrap(settings)
    # A file is committed on its own: no micro-batch writer runs in a function.
    intake = Intake(settings, runtime.metrics, runtime.devices, runtime.cache, runtime.uow)
    try:
        outcomes = await process_event(
            event, objects=runtime.objects, intake=intake, clock=runtime.clock
        )
    finally:
        await runtime.cache.close()
        await runtime.database.dispose()
    return summarise(outcomes)


def handler(event: Mapping[str, Any], _context: Any) -> dict[str, Any]:
    """Process an S3 ObjectCreated event, with settings from the environment (AWS Lambda).

    Raises UploadsFailed when an object met a fault that may pass, after trying every object,
    so that Lambda retries the event; objects already dealt with are then found missing.
    """
    summary = asyncio.run(handle_event(event, Settings()))
    if summary[Outcome.FAILED.value]:
        raise UploadsFailed(f"{summary[Outcome.FAILED.value]} of {summary['records']} failed")
    return summary
