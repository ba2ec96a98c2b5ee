"""HTTP routes of the devices context."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from medcloud.devices import credentials, images, rollouts, service, updates
from medcloud.devices import status as liveness  # `status` here is fastapi's (HTTP codes)
from medcloud.devices.mqtt import BrokerAccess, broker_access
from medcloud.devices.repository import DeviceFilter
from medcloud.devices.schemas import (
    AssignmentList,
    AssignmentSet,
    CampaignCreate,
    CampaignList,
    CampaignRead,
    CredentialIssued,
    CredentialList,
    CredentialRotate,
    DeviceAlertPage,
    DeviceCreate,
    DeviceModelCreate,
    DeviceModelList,
    DeviceModelRead,
    DevicePage,
    DeviceRead,
    DeviceRegistered,
    DeviceStatusRead,
    DeviceUpdate,
    FirmwareCreate,
    FirmwareList,
    FirmwareRead,
    HeartbeatIn,
    ProgressRead,
    ProgressReport,
    UpdateOffer,
)
from medcloud.platform.http import (
    Authorize,
    CurrentPrincipal,
    ListDep,
    QueryDep,
    RuntimeDep,
    UowDep,
)
from medcloud.platform.objects import ObjectStore
from medcloud.platform.policy import Action
from medcloud.platform.security import UserPrincipal

router = APIRouter()
devices = APIRouter(prefix="/api/v1/devices", tags=["devices"])
models = APIRouter(prefix="/api/v1/device-models", tags=["devices"])
campaigns = APIRouter(prefix="/api/v1/campaigns", tags=["devices"])
alerts = APIRouter(prefix="/api/v1/device-alerts", tags=["devices"])

# Devices, their credentials, models, firmware and rollouts are managed by those who register
# devices (admins, technicians).
Manager = Annotated[UserPrincipal, Authorize(Action.DEVICE_REGISTER)]
CredentialManager = Manager
Reader = Annotated[UserPrincipal, Authorize(Action.DEVICE_READ)]


async def get_object_store(runtime: RuntimeDep) -> ObjectStore:
    """Return the object store firmware images are kept in."""
    return runtime.objects


StoreDep = Annotated[ObjectStore, Depends(get_object_store)]


async def get_broker_access(runtime: RuntimeDep) -> BrokerAccess:
    """Return what keeps device credentials on the MQTT broker (nothing without MQTT)."""
    return broker_access(runtime.settings)


BrokerDep = Annotated[BrokerAccess, Depends(get_broker_access)]


@devices.post("", response_model=DeviceRegistered, status_code=status.HTTP_201_CREATED)
async def register_device(
    cmd: DeviceCreate,
    uow: UowDep,
    runtime: RuntimeDep,
    broker: BrokerDep,
    principal: Annotated[UserPrincipal, Authorize(Action.DEVICE_REGISTER)],
) -> DeviceRegistered:
    """Register a device; the response holds its token, shown only this once."""
    return await service.register_device(
        uow=uow, patients=runtime.patients, principal=principal, cmd=cmd, broker=broker
    )


@devices.get("", response_model=DevicePage)
async def list_devices(
    session: ListDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.DEVICE_READ)],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[
        Literal["unknown", "online", "offline", "decommissioned"] | None, Query()
    ] = None,
    model: Annotated[str | None, Query(max_length=100)] = None,
    model_id: Annotated[str | None, Query(max_length=64)] = None,
    ward_id: Annotated[str | None, Query(max_length=64)] = None,
    firmware_version: Annotated[str | None, Query(max_length=50)] = None,
    patient_id: Annotated[str | None, Query(max_length=64)] = None,
) -> DevicePage:
    """Search the organisation's devices, newest first: by status, model, ward, version, patient."""
    where = DeviceFilter(
        status=status,
        model=model,
        model_id=model_id,
        ward_id=ward_id,
        firmware_version=firmware_version,
        patient_id=patient_id,
    )
    return await service.list_devices(
        session=session,
        care=runtime.care,
        principal=principal,
        limit=limit,
        cursor=cursor,
        where=where,
    )


@devices.get("/{device_id}", response_model=DeviceRead)
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


@devices.patch("/{device_id}", response_model=DeviceRead)
async def update_device(
    device_id: str,
    cmd: DeviceUpdate,
    uow: UowDep,
    runtime: RuntimeDep,
    broker: BrokerDep,
    principal: Manager,
) -> DeviceRead:
    """Change a device's details, or decommission it with `{"decommissioned": true}`."""
    return await service.update_device(
        uow=uow,
        cache=runtime.cache,
        principal=principal,
        device_id=device_id,
        cmd=cmd,
        broker=broker,
    )


@devices.get("/{device_id}/assignments", response_model=AssignmentList)
async def list_assignments(
    device_id: str, session: QueryDep, runtime: RuntimeDep, principal: Reader
) -> AssignmentList:
    """Return which patients the device was attached to, and when, newest first."""
    return await service.list_assignments(
        session=session, care=runtime.care, principal=principal, device_id=device_id
    )


@devices.put("/{device_id}/assignment", response_model=AssignmentList)
async def assign_device(
    device_id: str, cmd: AssignmentSet, uow: UowDep, runtime: RuntimeDep, principal: Manager
) -> AssignmentList:
    """Attach the device to a patient from now on, or detach it (`patient_id` null)."""
    return await service.assign_device(
        uow=uow,
        patients=runtime.patients,
        cache=runtime.cache,
        principal=principal,
        device_id=device_id,
        cmd=cmd,
    )


@devices.get("/{device_id}/credentials", response_model=CredentialList)
async def list_credentials(
    device_id: str, session: QueryDep, principal: CredentialManager
) -> CredentialList:
    """List the device's credentials, newest first (never their tokens or hashes)."""
    return await credentials.list_credentials(
        session=session, principal=principal, device_id=device_id
    )


@devices.post(
    "/{device_id}/credentials/rotate",
    response_model=CredentialIssued,
    status_code=status.HTTP_201_CREATED,
)
async def rotate_credentials(
    device_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    broker: BrokerDep,
    principal: CredentialManager,
    cmd: CredentialRotate | None = None,
) -> CredentialIssued:
    """Issue a new token, shown only this once; the previous ones work for `grace_seconds`
    over HTTP (over MQTT the new one replaces them at once)."""
    return await credentials.rotate_credentials(
        uow=uow,
        cache=runtime.cache,
        principal=principal,
        device_id=device_id,
        cmd=cmd or CredentialRotate(),
        broker=broker,
    )


@devices.post("/{device_id}/credentials/revoke", response_model=CredentialList)
async def revoke_credentials(
    device_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    broker: BrokerDep,
    principal: CredentialManager,
) -> CredentialList:
    """Stop every token of the device at once."""
    return await credentials.revoke_credentials(
        uow=uow, cache=runtime.cache, principal=principal, device_id=device_id, broker=broker
    )


# The device's own routes: authenticated by its token, for itself only.


@devices.post("/{device_id}/heartbeat", response_model=DeviceStatusRead)
async def heartbeat(
    device_id: str, beat: HeartbeatIn, uow: UowDep, runtime: RuntimeDep, principal: CurrentPrincipal
) -> DeviceStatusRead:
    """Take the device's sign of life: battery, signal strength, firmware version, uptime."""
    return await liveness.record_heartbeat(
        uow=uow, settings=runtime.settings, principal=principal, device_id=device_id, beat=beat
    )


@devices.get(
    "/{device_id}/firmware/update",
    response_model=UpdateOffer,
    responses={204: {"description": "Nothing to install now."}},
)
async def check_for_update(
    device_id: str, uow: UowDep, runtime: RuntimeDep, principal: CurrentPrincipal
) -> UpdateOffer | Response:
    """Return the firmware the device should install now, or 204 when there is none."""
    offer = await updates.offer_update(
        uow=uow, settings=runtime.settings, principal=principal, device_id=device_id
    )
    return offer if offer is not None else Response(status_code=status.HTTP_204_NO_CONTENT)


@devices.get(
    "/{device_id}/firmware/images/{image_id}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def download_firmware(
    device_id: str, image_id: str, session: QueryDep, store: StoreDep, principal: CurrentPrincipal
) -> StreamingResponse:
    """Stream a firmware image of the device's model; check its SHA-256 and signature."""
    image = await images.download_image(
        session=session, store=store, principal=principal, device_id=device_id, image_id=image_id
    )
    return StreamingResponse(
        image.chunks,
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(image.size),
            "ETag": f'"{image.sha256}"',
            "Content-Disposition": f'attachment; filename="{image.file_name}"',
        },
    )


@devices.post("/{device_id}/firmware/progress", response_model=ProgressRead)
async def report_progress(
    device_id: str,
    report: ProgressReport,
    uow: UowDep,
    principal: CurrentPrincipal,
) -> ProgressRead:
    """Record how the device's update goes: downloading, installing, succeeded, failed."""
    return await updates.report_progress(
        uow=uow, principal=principal, device_id=device_id, report=report
    )


@models.post("", response_model=DeviceModelRead, status_code=status.HTTP_201_CREATED)
async def create_model(cmd: DeviceModelCreate, uow: UowDep, principal: Manager) -> DeviceModelRead:
    """Register a device model with its manufacturer's firmware signing key."""
    return await service.create_model(uow=uow, principal=principal, cmd=cmd)


@models.get("", response_model=DeviceModelList)
async def list_models(session: ListDep, principal: Manager) -> DeviceModelList:
    """List the organisation's device models."""
    return await service.list_models(session=session, principal=principal)


@models.get("/{model_id}", response_model=DeviceModelRead)
async def read_model(model_id: str, session: QueryDep, principal: Manager) -> DeviceModelRead:
    """Return one device model."""
    return await service.get_model(session=session, principal=principal, model_id=model_id)


@models.post("/{model_id}/firmware", response_model=FirmwareRead, status_code=201)
async def create_firmware(
    model_id: str, cmd: FirmwareCreate, uow: UowDep, principal: Manager
) -> FirmwareRead:
    """Announce a signed firmware image; upload its bytes next (PUT …/{version}/content)."""
    return await images.create_image(uow=uow, principal=principal, model_id=model_id, cmd=cmd)


@models.get("/{model_id}/firmware", response_model=FirmwareList)
async def list_firmware(model_id: str, session: ListDep, principal: Manager) -> FirmwareList:
    """List the model's firmware images, newest first."""
    return await images.list_images(session=session, principal=principal, model_id=model_id)


# Firmware images are the one body larger than the edge's limit; this route streams them to
# object storage under a limit of its own (`large_bodies` in the context declares it).
FIRMWARE_CONTENT = r"/api/v1/device-models/[^/]+/firmware/[^/]+/content"


@models.put(
    "/{model_id}/firmware/{version}/content",
    response_model=FirmwareRead,
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}},
)
async def upload_firmware(
    model_id: str,
    version: str,
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    store: StoreDep,
    principal: Manager,
) -> FirmwareRead:
    """Stream the image's bytes (raw body); kept only if they match the signed manifest."""
    return await images.upload_image(
        uow=uow,
        store=store,
        settings=runtime.settings,
        principal=principal,
        model_id=model_id,
        version=version,
        chunks=request.stream(),
    )


@models.post("/{model_id}/campaigns", response_model=CampaignRead, status_code=201)
async def create_campaign(
    model_id: str, cmd: CampaignCreate, uow: UowDep, principal: Manager
) -> CampaignRead:
    """Start a staged rollout of a verified image to the model's devices."""
    return await rollouts.create_campaign(uow=uow, principal=principal, model_id=model_id, cmd=cmd)


@campaigns.get("", response_model=CampaignList)
async def list_campaigns(session: ListDep, principal: Manager) -> CampaignList:
    """List the organisation's rollout campaigns, newest first."""
    return await rollouts.list_campaigns(session=session, principal=principal)


@campaigns.get("/{campaign_id}", response_model=CampaignRead)
async def read_campaign(campaign_id: str, session: QueryDep, principal: Manager) -> CampaignRead:
    """Return a campaign and its devices counted by update status."""
    return await rollouts.get_campaign(
        session=session, principal=principal, campaign_id=campaign_id
    )


@campaigns.post("/{campaign_id}/pause", response_model=CampaignRead)
async def pause_campaign(campaign_id: str, uow: UowDep, principal: Manager) -> CampaignRead:
    """Stop offering updates; those under way may finish."""
    return await rollouts.change_campaign(
        uow=uow, principal=principal, campaign_id=campaign_id, action="pause"
    )


@campaigns.post("/{campaign_id}/resume", response_model=CampaignRead)
async def resume_campaign(campaign_id: str, uow: UowDep, principal: Manager) -> CampaignRead:
    """Go on, accepting the failures so far."""
    return await rollouts.change_campaign(
        uow=uow, principal=principal, campaign_id=campaign_id, action="resume"
    )


@campaigns.post("/{campaign_id}/cancel", response_model=CampaignRead)
async def cancel_campaign(campaign_id: str, uow: UowDep, principal: Manager) -> CampaignRead:
    """Withdraw the updates not yet started, for good."""
    return await rollouts.change_campaign(
        uow=uow, principal=principal, campaign_id=campaign_id, action="cancel"
    )


@alerts.get("", response_model=DeviceAlertPage)
async def list_device_alerts(
    session: QueryDep,
    runtime: RuntimeDep,
    principal: Reader,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    open_only: Annotated[bool, Query(alias="open")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeviceAlertPage:
    """List technical alerts (device offline while in use, low battery), newest first."""
    return await liveness.list_device_alerts(
        session=session,
        care=runtime.care,
        principal=principal,
        device_id=device_id,
        open_only=open_only,
        limit=limit,
        cursor=cursor,
    )


for _part in (devices, models, campaigns, alerts):
    router.include_router(_part)
