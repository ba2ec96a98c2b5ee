"""Use cases of rollout campaigns: planning one over a model's devices, pausing, resuming or
cancelling it, and moving it on wave by wave as its updates finish.

Firmware images are in `images.py`, the device's side of an update in `updates.py`; all are kept
apart from `service.py` (the registry) because they change for different reasons, and follow the
same rules.

Lock order (PostgreSQL row locks; SQLite's writers take turns anyway): the device, then the
campaigns involved in ascending id, then their updates (`rollout_target` rows). A cancel holds
its campaign while it withdraws the pending updates, so a device path that held an update and
then asked for its campaign (to move the campaign on) could deadlock against it. Device paths
therefore lock the campaigns of the device's updates before the updates (`lock_campaigns_of`),
and the timeout sweep, which holds no device, locks campaigns before the stalled updates.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.devices import firmware, rollout_repository
from medcloud.devices.events import RolloutCampaignChanged
from medcloud.devices.firmware import FAILURES, SUCCESSES, CampaignStatus, Tally, TargetStatus
from medcloud.devices.images import organisation_model
from medcloud.devices.models import Device, FirmwareImage, RolloutCampaign, RolloutTarget
from medcloud.devices.schemas import CampaignCreate, CampaignList, CampaignRead
from medcloud.platform.audit import audit_record
from medcloud.platform.errors import Conflict, FieldError, Invalid, NotFound
from medcloud.platform.security import UserPrincipal
from medcloud.platform.uow import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)


async def create_campaign(
    *, uow: UnitOfWork, principal: UserPrincipal, model_id: str, cmd: CampaignCreate
) -> CampaignRead:
    """Plan a staged rollout: pick the devices, split them into waves, release the first."""
    async with uow:
        profile = await organisation_model(uow.session, principal, model_id)
        now = uow.clock.now()
        image = await rollout_repository.get_image(
            uow.session, principal.organisation_id, cmd.image_id
        )
        if image is None or image.model_id != profile.id or image.status != "verified":
            raise Invalid(
                "the campaign needs a verified image of this model",
                errors=[FieldError("image_id", "no verified image of this model")],
            )
        if image.expires_at <= now:
            raise Invalid(
                "the image's manifest has expired",
                errors=[FieldError("image_id", "the image's manifest has expired")],
            )
        busy = await rollout_repository.devices_in_active_campaigns(
            uow.session, principal.organisation_id
        )
        candidates = await rollout_repository.candidate_devices(
            uow.session, principal.organisation_id, profile.id, cmd.ward_id
        )
        chosen = [
            device
            for device in candidates
            if device.id not in busy and _may_install(device.firmware_version, image, cmd)
        ]
        ends = firmware.wave_ends(cmd.waves, len(chosen))
        campaign = RolloutCampaign(
            id=str(uuid.uuid4()),
            organisation_id=principal.organisation_id,
            name=cmd.name,
            model_id=profile.id,
            image_id=image.id,
            waves=orjson.dumps(cmd.waves).decode(),
            filters=orjson.dumps(
                {"from_versions": cmd.from_versions, "ward_id": cmd.ward_id}
            ).decode(),
            success_threshold=cmd.success_threshold,
            error_threshold=cmd.error_threshold,
            override_maintenance_window=cmd.override_maintenance_window,
            status=CampaignStatus.RUNNING,
            status_reason=None,
            current_wave=0,
            failures_accepted=0,
            created_at=now,
            updated_at=now,
        )
        uow.session.add(campaign)
        await uow.session.flush()
        wave = 0
        for index, device in enumerate(chosen):
            while index >= ends[wave]:
                wave += 1
            uow.session.add(
                RolloutTarget(
                    id=str(uuid.uuid4()),
                    campaign_id=campaign.id,
                    device_id=device.id,
                    wave=wave,
                    from_version=device.firmware_version,
                    status=TargetStatus.PENDING,
                    reason=None,
                    updated_at=now,
                )
            )
        await uow.session.flush()
        _announce(uow, campaign, "created")
        uow.publish(
            audit_record(
                principal,
                "rollout.create",
                occurred_at=now,
                object_type="rollout_campaign",
                object_id=campaign.id,
                detail={"targets": len(chosen), "image_id": image.id},
            )
        )
        await _evaluate(uow, campaign, now)
        read = await _read_campaign(uow.session, campaign, image.version)
        await uow.commit()
    return read


def _may_install(version: str | None, image: FirmwareImage, cmd: CampaignCreate) -> bool:
    # A device whose version is unknown cannot be shown to be older: anti-rollback skips it.
    if version is None or not firmware.is_newer(image.version, version):
        return False
    if image.min_version is not None and firmware.is_newer(image.min_version, version):
        return False
    return cmd.from_versions is None or version in cmd.from_versions


async def list_campaigns(*, session: AsyncSession, principal: UserPrincipal) -> CampaignList:
    """Return the organisation's campaigns, newest first."""
    items = []
    for campaign in await rollout_repository.campaigns(session, principal.organisation_id):
        image = await session.get(FirmwareImage, campaign.image_id)
        items.append(await _read_campaign(session, campaign, image.version if image else "?"))
    return CampaignList(items=items)


async def get_campaign(
    *, session: AsyncSession, principal: UserPrincipal, campaign_id: str
) -> CampaignRead:
    """Return one campaign with its devices counted by update status."""
    campaign = await rollout_repository.get_campaign(
        session, principal.organisation_id, campaign_id
    )
    if campaign is None:
        raise NotFound("campaign not found")
    image = await session.get(FirmwareImage, campaign.image_id)
    return await _read_campaign(session, campaign, image.version if image else "?")


async def change_campaign(
    *, uow: UnitOfWork, principal: UserPrincipal, campaign_id: str, action: str
) -> CampaignRead:
    """Pause, resume or cancel a campaign; asking for the state it is in changes nothing."""
    async with uow:
        campaign = await rollout_repository.get_campaign(
            uow.session, principal.organisation_id, campaign_id, for_update=True
        )
        if campaign is None:
            raise NotFound("campaign not found")
        now = uow.clock.now()
        finished = campaign.status in (CampaignStatus.CANCELLED, CampaignStatus.COMPLETED)
        target_state = {
            "pause": CampaignStatus.PAUSED,
            "resume": CampaignStatus.RUNNING,
            "cancel": CampaignStatus.CANCELLED,
        }[action]
        if campaign.status != target_state:
            if finished:
                raise Conflict(f"the campaign is {campaign.status}; it cannot {action}")
            if action == "pause":
                set_campaign_status(uow, campaign, CampaignStatus.PAUSED, "paused by a user", now)
            elif action == "cancel":
                await rollout_repository.cancel_unfinished(uow.session, campaign.id, now)
                set_campaign_status(
                    uow, campaign, CampaignStatus.CANCELLED, "cancelled by a user", now
                )
            else:
                await _resume(uow, campaign, now)
            uow.publish(
                audit_record(
                    principal,
                    f"rollout.{action}",
                    occurred_at=now,
                    object_type="rollout_campaign",
                    object_id=campaign.id,
                )
            )
        image = await uow.session.get(FirmwareImage, campaign.image_id)
        read = await _read_campaign(uow.session, campaign, image.version if image else "?")
        await uow.commit()
    return read


async def _resume(uow: UnitOfWork, campaign: RolloutCampaign, now: dt.datetime) -> None:
    # Resuming accepts the failures so far: the error threshold counts only new ones, and a wave
    # that ended below its success threshold lets the next one start.
    counts = await rollout_repository.target_counts(
        uow.session, campaign.id, up_to_wave=campaign.current_wave
    )
    tally = _tally(counts)
    campaign.failures_accepted = tally.failed
    set_campaign_status(uow, campaign, CampaignStatus.RUNNING, "resumed by a user", now)
    if tally.finished == tally.released:
        last = max(
            (await rollout_repository.wave_counts(uow.session, campaign.id)).keys(), default=0
        )
        if campaign.current_wave < last:
            campaign.current_wave += 1
            _announce(uow, campaign, f"wave {campaign.current_wave + 1} started")
    await _evaluate(uow, campaign, now)


def set_campaign_status(
    uow: UnitOfWork, campaign: RolloutCampaign, status: str, reason: str, now: dt.datetime
) -> None:
    """Put the campaign in this status for this reason, and announce it."""
    campaign.status, campaign.status_reason, campaign.updated_at = status, reason, now
    _announce(uow, campaign, reason)


def _announce(uow: UnitOfWork, campaign: RolloutCampaign, reason: str) -> None:
    uow.publish(
        RolloutCampaignChanged(
            organisation_id=campaign.organisation_id,
            campaign_id=campaign.id,
            status=campaign.status,
            current_wave=campaign.current_wave,
            reason=reason,
        )
    )


def _tally(counts: dict[str, int]) -> Tally:
    succeeded = sum(counts.get(s, 0) for s in SUCCESSES)
    failed = sum(counts.get(s, 0) for s in FAILURES)
    cancelled = counts.get(TargetStatus.CANCELLED, 0)
    released = sum(counts.values()) - cancelled
    return Tally(released=released, succeeded=succeeded, failed=failed, finished=succeeded + failed)


async def _evaluate(uow: UnitOfWork, campaign: RolloutCampaign, now: dt.datetime) -> None:
    """Move a running campaign on: next wave, completion, or a pause of its own."""
    if campaign.status != CampaignStatus.RUNNING:
        return
    last = max((await rollout_repository.wave_counts(uow.session, campaign.id)).keys(), default=0)
    while True:
        counts = await rollout_repository.target_counts(
            uow.session, campaign.id, up_to_wave=campaign.current_wave
        )
        decision = firmware.decide(
            _tally(counts),
            success_threshold=campaign.success_threshold,
            error_threshold=campaign.error_threshold,
            failures_accepted=campaign.failures_accepted,
            last_wave=campaign.current_wave >= last,
        )
        if decision.action == "advance":
            campaign.current_wave += 1
            campaign.updated_at = now
            _announce(uow, campaign, f"wave {campaign.current_wave + 1} started")
            continue
        if decision.action == "complete":
            set_campaign_status(uow, campaign, CampaignStatus.COMPLETED, "every wave finished", now)
        elif decision.action == "pause":
            log.warning("rollout.paused", campaign_id=campaign.id, reason=decision.reason)
            set_campaign_status(
                uow, campaign, CampaignStatus.PAUSED, decision.reason or "paused", now
            )
        return


async def evaluate_by_id(uow: UnitOfWork, organisation_id: str, campaign_id: str) -> None:
    """Lock the campaign and move it on if it is running (see `_evaluate`)."""
    campaign = await rollout_repository.get_campaign(
        uow.session, organisation_id, campaign_id, for_update=True
    )
    if campaign is not None:
        await _evaluate(uow, campaign, uow.clock.now())


async def advance_campaigns(*, uow_factory: UnitOfWorkFactory) -> None:
    """Re-evaluate every running campaign, each in its own transaction."""
    async with uow_factory() as uow:
        running = await rollout_repository.running_campaigns(uow.session)
    for organisation_id, campaign_id in running:
        async with uow_factory() as uow:
            await evaluate_by_id(uow, organisation_id, campaign_id)
            await uow.commit()


async def lock_campaigns_of(uow: UnitOfWork, device: Device, statuses: Collection[str]) -> None:
    """Lock the campaigns of the device's updates in `statuses`, in id order, before the updates.

    Call with the device locked: then no update of it can appear (inserting one takes a key-share
    lock on the device row) or move into these statuses (only paths holding the device do that),
    so the updates locked next all belong to campaigns locked here.
    """
    campaign_ids = await rollout_repository.device_campaign_ids(uow.session, device.id, statuses)
    for campaign_id in campaign_ids:
        await rollout_repository.get_campaign(
            uow.session, device.organisation_id, campaign_id, for_update=True
        )


async def _read_campaign(
    session: AsyncSession, campaign: RolloutCampaign, version: str
) -> CampaignRead:
    per_wave = await rollout_repository.wave_counts(session, campaign.id)
    sizes, total = [], 0
    for wave in sorted(per_wave):
        total += per_wave[wave]
        sizes.append(total)
    return CampaignRead(
        id=campaign.id,
        name=campaign.name,
        model_id=campaign.model_id,
        image_id=campaign.image_id,
        version=version,
        waves=orjson.loads(campaign.waves),
        wave_sizes=sizes,
        current_wave=campaign.current_wave,
        filters=orjson.loads(campaign.filters),
        success_threshold=campaign.success_threshold,
        error_threshold=campaign.error_threshold,
        override_maintenance_window=campaign.override_maintenance_window,
        status=campaign.status,
        status_reason=campaign.status_reason,
        targets=await rollout_repository.target_counts(session, campaign.id),
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
    )
