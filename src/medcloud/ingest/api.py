"""HTTP routes of the ingest context."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import AwareDatetime

from medcloud.ingest import service
from medcloud.ingest.schemas import IngestResult, ReadingPage, ReadingsIn
from medcloud.platform.http import (
    Authorize,
    CurrentPrincipal,
    RuntimeDep,
    UowDep,
)
from medcloud.platform.policy import Action
from medcloud.platform.security import UserPrincipal

router = APIRouter(prefix="/api/v1/devices", tags=["ingest"])


@router.post("/{device_id}/data", response_model=IngestResult, status_code=status.HTTP_201_CREATED)
async def ingest_readings(
    device_id: str,
    body: ReadingsIn,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
) -> IngestResult:
    """Store one reading or a batch, all or nothing; answers only once they are committed."""
    readings, batch = body.as_batch()
    return await service.ingest_readings(
        uow=uow,
        principal=principal,
        device_id=device_id,
        readings=readings,
        batch=batch,
        settings=runtime.settings,
        metrics=runtime.metrics,
    )


@router.get("/{device_id}/data", response_model=ReadingPage)
async def list_readings(
    device_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.READINGS_READ)],
    start: AwareDatetime | None = None,
    end: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> ReadingPage:
    """Return a device's readings, newest first."""
    return await service.list_readings(
        uow=uow,
        devices=runtime.devices,
        care=runtime.care,
        principal=principal,
        device_id=device_id,
        start=start,
        end=end,
        limit=limit,
        cursor=cursor,
    )
