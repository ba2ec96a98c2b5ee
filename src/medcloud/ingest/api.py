"""HTTP routes of the ingest context."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, status
from pydantic import AwareDatetime

from medcloud.ingest import queries, service
from medcloud.ingest.schemas import (
    BucketPage,
    IngestResult,
    LatestReadings,
    QuarantinePage,
    ReadingPage,
    ReadingsIn,
)
from medcloud.ingest.writer import running_writer
from medcloud.platform.http import (
    Authorize,
    CurrentPrincipal,
    RuntimeDep,
    UowDep,
)
from medcloud.platform.policy import Action
from medcloud.platform.security import UserPrincipal

router = APIRouter(prefix="/api/v1", tags=["ingest"])

# The body is read by the service (JSON or NDJSON, gzip or not), so describe it here.
_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ReadingsIn.model_json_schema()},
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "one reading object per line"}
            },
        },
    }
}


@router.post(
    "/devices/{device_id}/data",
    response_model=IngestResult,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_BODY,
)
async def ingest_readings(
    device_id: str,
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: CurrentPrincipal,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> IngestResult:
    """Store one reading or a batch, all or nothing; answers only once they are committed."""
    return await service.receive_readings(
        uow=uow,
        principal=principal,
        device_id=device_id,
        body=await request.body(),
        content_type=request.headers.get("content-type"),
        content_encoding=request.headers.get("content-encoding"),
        idempotency_key=idempotency_key,
        settings=runtime.settings,
        metrics=runtime.metrics,
        cache=runtime.cache,
        devices=runtime.devices,
        writer=running_writer(runtime.services),
    )


@router.get("/devices/{device_id}/data", response_model=ReadingPage)
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
    return await queries.list_readings(
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


@router.get("/devices/{device_id}/data/buckets", response_model=BucketPage)
async def summarise_readings(
    device_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.READINGS_READ)],
    start: AwareDatetime | None = None,
    end: AwareDatetime | None = None,
    bucket: Annotated[int | None, Query(ge=1, le=31 * 86_400, description="seconds")] = None,
) -> BucketPage:
    """Return min, max and mean per time bucket (at most ~1,000 per type) for charts."""
    return await queries.summarise_readings(
        uow=uow,
        devices=runtime.devices,
        care=runtime.care,
        principal=principal,
        device_id=device_id,
        start=start,
        end=end,
        bucket_seconds=bucket,
        settings=runtime.settings,
    )


@router.get("/readings/latest/{patient_id}", response_model=LatestReadings)
async def latest_readings(
    patient_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.READINGS_READ)],
) -> LatestReadings:
    """Return a patient's newest value of every measurement type."""
    return await queries.latest_readings(
        uow=uow,
        patients=runtime.patients,
        care=runtime.care,
        principal=principal,
        patient_id=patient_id,
    )


@router.get("/quarantine", response_model=QuarantinePage)
async def list_quarantine(
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.DEVICE_READ)],
    device_id: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> QuarantinePage:
    """Return readings the data-quality gate refused, with the reason, newest first."""
    return await queries.list_quarantine(
        uow=uow,
        care=runtime.care,
        principal=principal,
        device_id=device_id,
        limit=limit,
        cursor=cursor,
    )
