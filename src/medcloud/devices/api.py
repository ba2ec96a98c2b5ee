"""HTTP routes of the devices context."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from medcloud.devices import service
from medcloud.devices.schemas import DeviceCreate, DevicePage, DeviceRead, DeviceRegistered
from medcloud.platform.http import Authorize, QueryDep, UowDep
from medcloud.platform.policy import Action
from medcloud.platform.security import UserPrincipal

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])


@router.post("", response_model=DeviceRegistered, status_code=status.HTTP_201_CREATED)
async def register_device(
    cmd: DeviceCreate,
    uow: UowDep,
    principal: Annotated[UserPrincipal, Authorize(Action.DEVICE_REGISTER)],
) -> DeviceRegistered:
    """Register a device; the response holds its token, shown only this once."""
    return await service.register_device(uow=uow, principal=principal, cmd=cmd)


@router.get("", response_model=DevicePage)
async def list_devices(
    session: QueryDep,
    principal: Annotated[UserPrincipal, Authorize(Action.DEVICE_READ)],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DevicePage:
    """List the organisation's devices, newest first."""
    return await service.list_devices(
        session=session, principal=principal, limit=limit, cursor=cursor
    )


@router.get("/{device_id}", response_model=DeviceRead)
async def read_device(
    device_id: str,
    session: QueryDep,
    principal: Annotated[UserPrincipal, Authorize(Action.DEVICE_READ)],
) -> DeviceRead:
    """Return one device."""
    return await service.get_device(session=session, principal=principal, device_id=device_id)
