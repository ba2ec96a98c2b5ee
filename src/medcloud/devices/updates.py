"""Use cases of the device's side of a rollout: the update it is offered, the progress it
reports, the version it comes back on, and the updates it has gone silent about.

Every path here takes its locks in the order `rollouts.py` describes.
"""

from __future__ import annotations

import datetime as dt

import orjson

from medcloud.config import Settings
from medcloud.devices import firmware, repository, rollout_repository, rollouts
from medcloud.devices.events import FirmwareUpdateReported
from medcloud.devices.firmware import IN_FLIGHT, CampaignStatus, TargetStatus
from medcloud.devices.models import Device, FirmwareImage, RolloutCampaign, RolloutTarget
from medcloud.devices.schemas import ProgressRead, ProgressReport, UpdateOffer
from medcloud.platform.audit import audit_record
from medcloud.platform.errors import Conflict, FieldError
from medcloud.platform.policy import authorize_device_write
from medcloud.platform.security import Principal
from medcloud.platform.uow import UnitOfWork


async def offer_update(
    *, uow: UnitOfWork, settings: Settings, principal: Principal, device_id: str
) -> UpdateOffer | None:
    """Tell a device what to install now, if anything (and note that it was offered)."""
    authorize_device_write(principal, device_id)
    async with uow:
        device = await repository.lock_in_organisation(
            uow.session, principal.organisation_id, device_id
        )
        now = uow.clock.now()
        offer = None
        await rollouts.lock_campaigns_of(uow, device, rollout_repository.UNFINISHED)
        for target, campaign in await rollout_repository.device_targets(
            uow.session, device.id, rollout_repository.UNFINISHED
        ):
            offer = await _offer(uow, settings, device, target, campaign, now)
            if offer is not None:
                break
        await uow.commit()
    return offer


async def _offer(
    uow: UnitOfWork,
    settings: Settings,
    device: Device,
    target: RolloutTarget,
    campaign: RolloutCampaign,
    now: dt.datetime,
) -> UpdateOffer | None:
    image = await uow.session.get(FirmwareImage, campaign.image_id)
    if image is None or image.sha256 is None or image.size_bytes is None:
        return None
    if target.status == TargetStatus.PENDING:
        # A paused campaign lets updates under way finish, but starts no new ones.
        if campaign.status != CampaignStatus.RUNNING or target.wave > campaign.current_wave:
            return None
        if (
            device.patient_id is not None
            and not campaign.override_maintenance_window
            and not firmware.in_window(settings.devices.maintenance_window, now)
        ):
            return None
        if image.expires_at <= now:
            rollouts.set_campaign_status(
                uow, campaign, CampaignStatus.PAUSED, "the image's manifest has expired", now
            )
            return None
        if device.firmware_version is not None and not firmware.is_newer(
            image.version, device.firmware_version
        ):
            # Anti-rollback: never offer a version that is not newer than the device's.
            _move(uow, target, campaign, image, TargetStatus.SKIPPED, now, "already up to date")
            await rollouts.evaluate_by_id(uow, campaign.organisation_id, campaign.id)
            return None
        _move(uow, target, campaign, image, TargetStatus.OFFERED, now, None)
    elif campaign.status == CampaignStatus.CANCELLED:
        return None
    return UpdateOffer(
        campaign_id=campaign.id,
        image_id=image.id,
        version=image.version,
        download_url=f"/api/v1/devices/{device.id}/firmware/images/{image.id}",
        sha256=image.sha256,
        size_bytes=image.size_bytes,
        signature=image.signature,
        manifest=orjson.loads(image.manifest),
    )


async def report_progress(
    *, uow: UnitOfWork, principal: Principal, device_id: str, report: ProgressReport
) -> ProgressRead:
    """Record how the device's update goes; a finished one moves its campaign on."""
    authorize_device_write(principal, device_id)
    async with uow:
        device = await repository.lock_in_organisation(
            uow.session, principal.organisation_id, device_id
        )
        now = uow.clock.now()
        await rollouts.lock_campaigns_of(uow, device, IN_FLIGHT)
        under_way = [
            (target, campaign)
            for target, campaign in await rollout_repository.device_targets(
                uow.session, device.id, tuple(IN_FLIGHT)
            )
            if report.campaign_id in (None, campaign.id)
        ]
        if not under_way:
            raise Conflict(
                "no firmware update is under way on this device",
                errors=[FieldError("campaign_id", "no update offered to this device")],
            )
        target, campaign = under_way[0]
        image = await uow.session.get(FirmwareImage, campaign.image_id)
        assert image is not None  # noqa: S101  (a campaign's image is never deleted)
        status = TargetStatus(report.status)
        _move(uow, target, campaign, image, status, now, report.reason)
        if status == TargetStatus.SUCCEEDED:
            device.firmware_version = image.version
        if status in (TargetStatus.SUCCEEDED, TargetStatus.FAILED):
            uow.publish(
                audit_record(
                    principal,
                    f"firmware.update.{status.value}",
                    occurred_at=now,
                    object_type="device",
                    object_id=device.id,
                    patient_id=device.patient_id,
                    detail={"campaign_id": campaign.id, "version": image.version},
                )
            )
            await rollouts.evaluate_by_id(uow, campaign.organisation_id, campaign.id)
        await uow.commit()
    return ProgressRead(campaign_id=campaign.id, status=target.status, reason=target.reason)


async def reconcile_version(
    uow: UnitOfWork, device: Device, version: str, now: dt.datetime
) -> None:
    """Judge updates by the version a device reports: the new one succeeded, the old one rolled
    back (a device that restarts on its previous firmware has undone the update)."""
    watched = (*IN_FLIGHT, TargetStatus.SUCCEEDED)
    await rollouts.lock_campaigns_of(uow, device, watched)
    for target, campaign in await rollout_repository.device_targets(
        uow.session, device.id, watched
    ):
        image = await uow.session.get(FirmwareImage, campaign.image_id)
        if image is None:
            continue
        if target.status in IN_FLIGHT and version == image.version:
            outcome, reason = TargetStatus.SUCCEEDED, None
        elif (
            target.status in (TargetStatus.INSTALLING, TargetStatus.SUCCEEDED)
            and target.from_version is not None
            and version == target.from_version
        ):
            outcome, reason = TargetStatus.ROLLED_BACK, f"the device came back on {version}"
        else:
            continue
        _move(uow, target, campaign, image, outcome, now, reason)
        await rollouts.evaluate_by_id(uow, campaign.organisation_id, campaign.id)


async def time_out_updates(*, uow: UnitOfWork, settings: Settings) -> int:
    """Fail updates a device has been silent about for too long; return how many."""
    timeout = settings.devices.update_timeout_seconds
    async with uow:
        now = uow.clock.now()
        silent_since = now - dt.timedelta(seconds=timeout)
        stalled = await rollout_repository.stalled_targets(uow.session, silent_since)
        organisations = {campaign.id: campaign.organisation_id for _, campaign in stalled}
        # Campaigns before updates (see the lock order in `rollouts.py`). The updates were read
        # unlocked, so each is read again under its lock: its device may have reported meanwhile,
        # and overwriting that report would fail an update the device was told had succeeded.
        for campaign_id in sorted(organisations):
            await rollout_repository.get_campaign(
                uow.session, organisations[campaign_id], campaign_id, for_update=True
            )
        timed_out = 0
        moved: set[str] = set()
        for target, campaign in sorted(stalled, key=lambda pair: pair[0].id):
            await uow.session.refresh(target, with_for_update=True)
            if target.status not in IN_FLIGHT or target.updated_at >= silent_since:
                continue
            image = await uow.session.get(FirmwareImage, campaign.image_id)
            if image is None:
                continue
            reason = f"no report for {timeout:g} s while {target.status}"
            _move(uow, target, campaign, image, TargetStatus.TIMED_OUT, now, reason)
            timed_out += 1
            moved.add(campaign.id)
        for campaign_id in sorted(moved):
            await rollouts.evaluate_by_id(uow, organisations[campaign_id], campaign_id)
        await uow.commit()
    return timed_out


def _move(
    uow: UnitOfWork,
    target: RolloutTarget,
    campaign: RolloutCampaign,
    image: FirmwareImage,
    status: TargetStatus,
    now: dt.datetime,
    reason: str | None,
) -> None:
    target.status, target.reason, target.updated_at = status, reason, now
    uow.publish(
        FirmwareUpdateReported(
            organisation_id=campaign.organisation_id,
            campaign_id=campaign.id,
            device_id=target.device_id,
            image_id=image.id,
            firmware_version=image.version,
            status=status.value,
            reason=reason,
        )
    )
