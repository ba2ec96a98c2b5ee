"""HTTP routes of the reports context."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from medcloud.platform.http import Authorize, ListDep, RuntimeDep, UowDep
from medcloud.platform.policy import Action
from medcloud.platform.security import UserPrincipal
from medcloud.reports import service
from medcloud.reports.making import MEDIA_TYPES, runtime_sources
from medcloud.reports.schemas import FileFormat, ReportCreate, ReportPage, ReportQuery, ReportRead

router = APIRouter(tags=["reports"])

Reader = Annotated[UserPrincipal, Authorize(Action.REPORTS_READ)]
Generator = Annotated[UserPrincipal, Authorize(Action.REPORTS_GENERATE)]
FILE_CONTENT: dict[str, Any] = {media_type: {} for media_type in MEDIA_TYPES.values()}


@router.post(
    "/api/v1/reports",
    response_model=ReportRead,
    status_code=201,
    responses={404: {"description": "The ward or patient named is outside the caller's care."}},
)
async def create_report(
    body: ReportCreate, principal: Generator, uow: UowDep, runtime: RuntimeDep
) -> ReportRead:
    """Make a report of one UTC day now: its figures, and links to its PDF, CSV and FHIR."""
    return await service.create_report(
        uow=uow, sources=runtime_sources(runtime), principal=principal, body=body
    )


@router.get("/api/v1/reports", response_model=ReportPage)
async def list_reports(
    query: Annotated[ReportQuery, Query()], principal: Reader, session: ListDep, runtime: RuntimeDep
) -> ReportPage:
    """List the reports the user may read, newest first."""
    return await service.list_reports(
        session=session,
        sources=runtime_sources(runtime),
        principal=principal,
        query=query,
        now=runtime.clock.now(),
    )


@router.get("/api/v1/reports/{report_id}", response_model=ReportRead)
async def get_report(
    report_id: str, principal: Reader, uow: UowDep, runtime: RuntimeDep
) -> ReportRead:
    """Return a report, its figures and fresh download links."""
    return await service.get_report(
        uow=uow, sources=runtime_sources(runtime), principal=principal, report_id=report_id
    )


@router.get(
    "/api/v1/reports/{report_id}/files/{file_format}",
    response_class=Response,
    responses={200: {"content": FILE_CONTENT}},
)
async def download_report(
    report_id: str,
    file_format: FileFormat,
    expires: Annotated[int, Query(ge=0, le=2**40)],
    signature: Annotated[str, Query(min_length=1, max_length=128)],
    uow: UowDep,
    runtime: RuntimeDep,
) -> Response:
    """Send a report's file to whoever holds a valid, unexpired signed link."""
    found = await service.download(
        uow=uow,
        sources=runtime_sources(runtime),
        report_id=report_id,
        file_format=file_format,
        expires=expires,
        signature=signature,
    )
    return Response(
        found.content,
        media_type=found.media_type,
        headers={"Content-Disposition": f'attachment; filename="{found.filename}"'},
    )
