"""HTTP routes of the ingest context."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from medcloud.ingest import queries
from medcloud.ingest.decode import Decoded, Undecodable, decode
from medcloud.ingest.intake import Intake, Replay, Transport
from medcloud.ingest.schemas import (
    BucketPage,
    IngestResult,
    LatestReadings,
    QuarantinePage,
    ReadingPage,
    ReadingsIn,
)
from medcloud.platform.errors import FieldError, Invalid
from medcloud.platform.http import (
    Authorize,
    RuntimeDep,
    UowDep,
    bearer_principal,
    runtime_of,
)
from medcloud.platform.policy import Action
from medcloud.platform.security import UserPrincipal
from medcloud.platform.types import Timestamp

router = APIRouter(prefix="/api/v1", tags=["ingest"])

JSON = "application/json"
_KEY = "header.idempotency-key"
_MAX_IDEMPOTENCY_KEY = 255

# The route reads its request itself, so its body, header and credentials are described here.
_BODY: dict[str, Any] = {
    "security": [{"HTTPBearer": []}],
    "parameters": [
        {
            "name": "idempotency-key",
            "in": "header",
            "required": False,
            "description": "repeating a request with the same key and body replays its answer",
            "schema": {"type": "string", "minLength": 1, "maxLength": _MAX_IDEMPOTENCY_KEY},
        }
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": ReadingsIn.model_json_schema()},
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "one reading object per line"}
            },
        },
    },
}


@router.post(
    "/devices/{device_id}/data",
    response_model=IngestResult,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_BODY,
)
async def ingest_readings(device_id: str, request: Request) -> Response:
    """Store one reading or a batch, all or nothing; answers only once they are committed."""
    # Every bedside device calls this about once a second, so it reads its request itself:
    # resolving dependencies, validating the answer against its model and encoding it through
    # jsonable_encoder cost more than storing the reading (docs/benchmarks.md).
    runtime = runtime_of(request)
    principal = await bearer_principal(request, runtime)
    body = await request.body()
    content_type = request.headers.get("content-type")
    content_encoding = request.headers.get("content-encoding")
    try:
        decoded = decode(
            body,
            content_type=content_type,
            content_encoding=content_encoding,
            max_inflated_bytes=runtime.settings.ingest.max_decompressed_bytes,
            max_readings=runtime.settings.max_batch_readings,
        )
    except Undecodable as exc:
        decoded = Decoded([], False, [exc.problem], exc.error)
    replay = None
    key = _idempotency_key(request)
    if key is not None:
        # The same key answers again only for the same body, sent the same way.
        digest = hashlib.sha256(f"{content_type}\0{content_encoding}\0".encode())
        digest.update(body)
        scoped = hashlib.sha256(f"{device_id}\0{key}".encode()).hexdigest()
        replay = Replay(f"ingest:idempotency:{scoped}", digest.hexdigest())
    result = await runtime.services.require(Intake).receive(
        principal, device_id, decoded, transport=Transport.HTTP, replay=replay
    )
    return Response(result.model_dump_json(), status_code=status.HTTP_201_CREATED, media_type=JSON)


def _answer(model: BaseModel) -> Response:
    """Answer with a model already built from the database. Returned as the model itself,
    FastAPI would dump it to dicts, validate those against `response_model` and serialise them:
    three passes over a chart's thousands of buckets instead of one."""
    return Response(model.model_dump_json(), media_type=JSON)


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and not 1 <= len(key) <= _MAX_IDEMPOTENCY_KEY:
        error = f"between 1 and {_MAX_IDEMPOTENCY_KEY} characters"
        raise Invalid("the Idempotency-Key header is malformed", errors=[FieldError(_KEY, error)])
    return key


@router.get("/devices/{device_id}/data", response_model=ReadingPage)
async def list_readings(
    device_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.READINGS_READ)],
    start: Timestamp | None = None,
    end: Timestamp | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """Return a device's readings, newest first."""
    return _answer(
        await queries.list_readings(
            uow=uow,
            replica=runtime.replica_sessions,
            devices=runtime.devices,
            care=runtime.care,
            principal=principal,
            device_id=device_id,
            start=start,
            end=end,
            limit=limit,
            cursor=cursor,
        )
    )


@router.get("/devices/{device_id}/data/buckets", response_model=BucketPage)
async def summarise_readings(
    device_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.READINGS_READ)],
    start: Timestamp | None = None,
    end: Timestamp | None = None,
    bucket: Annotated[
        int | None,
        Query(
            ge=1,
            le=31 * 86_400,
            description="seconds; from a minute up rounded to whole minutes, from six hours "
            "up to whole hours (the answer's `bucket_seconds` says which)",
        ),
    ] = None,
) -> Response:
    """Return min, max and mean per time bucket (at most ~1,000 per type) for charts."""
    return _answer(
        await queries.summarise_readings(
            uow=uow,
            replica=runtime.replica_sessions,
            devices=runtime.devices,
            care=runtime.care,
            principal=principal,
            device_id=device_id,
            start=start,
            end=end,
            bucket_seconds=bucket,
            settings=runtime.settings,
        )
    )


@router.get("/readings/latest/{patient_id}", response_model=LatestReadings)
async def latest_readings(
    patient_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.READINGS_READ)],
) -> Response:
    """Return a patient's newest value of every measurement type."""
    return _answer(
        await queries.latest_readings(
            uow=uow,
            replica=runtime.replica_sessions,
            patients=runtime.patients,
            care=runtime.care,
            principal=principal,
            patient_id=patient_id,
        )
    )


@router.get(
    "/readings/latest/{patient_id}/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def latest_readings_stream(
    patient_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.READINGS_READ)],
) -> StreamingResponse:
    """A patient's newer values as Server-Sent Events (`reading`, as in `latest`), for a live
    chart: audited once when opened, and ended (`ended`) when the patient leaves the user's
    care."""
    events = await queries.latest_stream(
        uow=uow,
        sessions=runtime.read_sessions,
        patients=runtime.patients,
        care=runtime.care,
        principal=principal,
        patient_id=patient_id,
    )
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
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
        replica=runtime.replica_sessions,
        care=runtime.care,
        principal=principal,
        device_id=device_id,
        limit=limit,
        cursor=cursor,
    )
