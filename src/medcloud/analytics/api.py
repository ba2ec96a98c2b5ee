"""HTTP routes of the analytics context."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from medcloud.analytics import service
from medcloud.analytics.schemas import AlertPage, AlertSource
from medcloud.platform.http import Authorize, RuntimeDep, UowDep
from medcloud.platform.policy import Action
from medcloud.platform.security import UserPrincipal

router = APIRouter(prefix="/api/v1/alerts", tags=["analytics"])


@router.get("", response_model=AlertPage)
async def list_alerts(
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.ALERTS_READ)],
    device_id: Annotated[str | None, Query(max_length=36)] = None,
    source: AlertSource | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AlertPage:
    """List alerts, newest first: clinical (rules on readings), technical (devices), or both."""
    return await service.list_alerts(
        uow=uow,
        care=runtime.care,
        principal=principal,
        device_id=device_id,
        source=source,
        limit=limit,
        cursor=cursor,
    )
