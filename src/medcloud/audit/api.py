"""HTTP routes of the audit context."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response, StreamingResponse

from medcloud.audit import service
from medcloud.audit.schemas import AuditPage, AuditQuery, ExportFormat, VerificationRead
from medcloud.platform.http import Authorize, ListDep, QueryDep, RuntimeDep, SettingsDep, UowDep
from medcloud.platform.policy import Action
from medcloud.platform.security import UserPrincipal

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

AuditReader = Annotated[UserPrincipal, Authorize(Action.AUDIT_READ)]
EXPORT_CONTENT: dict[str, Any] = {"text/csv": {}, "application/x-ndjson": {}}


@router.get("", response_model=AuditPage, responses={200: {"content": EXPORT_CONTENT}})
async def list_entries(
    query: Annotated[AuditQuery, Query()],
    principal: AuditReader,
    session: ListDep,
    uow: UowDep,
    runtime: RuntimeDep,
) -> AuditPage | Response:
    """List the organisation's audit entries newest first, or download every match."""
    if query.format is ExportFormat.JSON:
        return await service.list_entries(session=session, principal=principal, query=query)
    export = await service.export_entries(
        uow=uow,
        sessions=runtime.replica_sessions,
        principal=principal,
        query=query,
    )
    return StreamingResponse(
        export.chunks,
        media_type=export.media_type,
        headers={"Content-Disposition": f'attachment; filename="{export.filename}"'},
    )


@router.get("/verify", response_model=VerificationRead, dependencies=[Authorize(Action.AUDIT_READ)])
async def verify_chain(session: QueryDep, settings: SettingsDep) -> VerificationRead:
    """Check the whole chain; `ok` false names the first bad position and why."""
    return await service.verify_chain(session=session, settings=settings)
