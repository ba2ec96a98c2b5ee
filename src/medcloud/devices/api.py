"""HTTP routes of the devices context."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from medcloud.devices import service
from medcloud.devices.schemas import (
    CredentialIssued,
    CredentialList,
    CredentialRotate,
    DeviceCreate,
    DevicePage,
    DeviceRead,
    DeviceRegistered,
)
from medcloud.platform.http import Authorize, QueryDep, RuntimeDep, UowDep
from medcloud.platform.policy import Action
from medcloud.platform.security import UserPrincipal

router = APIRouter(prefix="/api/v1/devices", tags=["devices"])

# Credentials are managed by those who register devices (admins, technicians).
CredentialManager = Annotated[UserPrincipal, Authorize(Action.DEVICE_REGISTER)]


@router.post("", response_model=DeviceRegistered, status_code=status.HTTP_201_CREATED)
async def register_device(
    cmd: DeviceCreate,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.DEVICE_REGISTER)],
) -> DeviceRegistered:
    """Register a device; the response holds its token, shown only this once."""
    return await service.register_device(
        uow=uow, patients=runtime.patients, principal=principal, cmd=cmd
    )


@router.get("", response_model=DevicePage)
async def list_devices(
    session: QueryDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.DEVICE_READ)],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DevicePage:
    """List the organisation's devices, newest first."""
    return await service.list_devices(
        session=session, care=runtime.care, principal=principal, limit=limit, cursor=cursor
    )


@router.get("/{device_id}", response_model=DeviceRead)
async def read_device(
    device_id: str,
    session: QueryDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.DEVICE_READ)],
) -> DeviceRead:
    """Return one device."""
    return await service.get_device(
        session=session, care=runtime.care, principal=principal, device_id=device_id
    )


@router.get("/{device_id}/credentials", response_model=CredentialList)
async def list_credentials(
    device_id: str, session: QueryDep, principal: CredentialManager
) -> CredentialList:
    """List the device's credentials, newest first (never their tokens or hashes)."""
    return await service.list_credentials(session=session, principal=principal, device_id=device_id)


@router.post(
    "/{device_id}/credentials/rotate",
    response_model=CredentialIssued,
    status_code=status.HTTP_201_CREATED,
)
async def rotate_credentials(
    device_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: CredentialManager,
    cmd: CredentialRotate | None = None,
) -> CredentialIssued:
    """Issue a new token, shown only this once; the previous ones work for `grace_seconds`."""
    return await service.rotate_credentials(
        uow=uow,
        cache=runtime.cache,
        principal=principal,
        device_id=device_id,
        cmd=cmd or CredentialRotate(),
    )


@router.post("/{device_id}/credentials/revoke", response_model=CredentialList)
async def revoke_credentials(
    device_id: str, uow: UowDep, runtime: RuntimeDep, principal: CredentialManager
) -> CredentialList:
    """Stop every token of the device at once."""
    return await service.revoke_credentials(
        uow=uow, cache=runtime.cache, principal=principal, device_id=device_id
    )
