"""Queries on firmware images, rollout campaigns and their updates (`rollout_target` rows).
Repositories never commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.devices.firmware import IN_FLIGHT, CampaignStatus, TargetStatus
from medcloud.devices.models import Device, FirmwareImage, RolloutCampaign, RolloutTarget


async def get_image(
    session: AsyncSession, organisation_id: str, image_id: str, *, for_update: bool = False
) -> FirmwareImage | None:
    """Return the organisation's firmware image, or None."""
    query = select(FirmwareImage).where(
        FirmwareImage.id == image_id, FirmwareImage.organisation_id == organisation_id
    )
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return await session.scalar(query)


async def images(session: AsyncSession, model_id: str) -> Sequence[FirmwareImage]:
    """Return a model's firmware images, newest first."""
    query = (
        select(FirmwareImage)
        .where(FirmwareImage.model_id == model_id)
        .order_by(FirmwareImage.created_at.desc(), FirmwareImage.id.desc())
    )
    return (await session.scalars(query)).all()


async def image_by_version(
    session: AsyncSession, model_id: str, version: str
) -> FirmwareImage | None:
    """Return the model's image of this version, or None."""
    return await session.scalar(
        select(FirmwareImage).where(
            FirmwareImage.model_id == model_id, FirmwareImage.version == version
        )
    )


async def version_taken(session: AsyncSession, model_id: str, version: str) -> bool:
    """Tell whether the model already has an image of this version."""
    found = await session.scalar(
        select(FirmwareImage.id).where(
            FirmwareImage.model_id == model_id, FirmwareImage.version == version
        )
    )
    return found is not None


async def get_campaign(
    session: AsyncSession, organisation_id: str, campaign_id: str, *, for_update: bool = False
) -> RolloutCampaign | None:
    """Return the organisation's campaign, or None; `for_update` locks it (PostgreSQL)."""
    query = select(RolloutCampaign).where(
        RolloutCampaign.id == campaign_id, RolloutCampaign.organisation_id == organisation_id
    )
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return await session.scalar(query)


async def campaigns(session: AsyncSession, organisation_id: str) -> Sequence[RolloutCampaign]:
    """Return the organisation's campaigns, newest first."""
    query = (
        select(RolloutCampaign)
        .where(RolloutCampaign.organisation_id == organisation_id)
        .order_by(RolloutCampaign.created_at.desc(), RolloutCampaign.id.desc())
    )
    return (await session.scalars(query)).all()


async def campaigns_between(
    session: AsyncSession, organisation_id: str, start: dt.datetime, end: dt.datetime
) -> Sequence[RolloutCampaign]:
    """Return the organisation's campaigns that ran in [start, end), oldest first: created
    before `end`, and still going at `start` or changed since."""
    query = (
        select(RolloutCampaign)
        .where(
            RolloutCampaign.organisation_id == organisation_id,
            RolloutCampaign.created_at < end,
            (RolloutCampaign.updated_at >= start)
            | RolloutCampaign.status.in_((CampaignStatus.RUNNING, CampaignStatus.PAUSED)),
        )
        .order_by(RolloutCampaign.created_at, RolloutCampaign.id)
    )
    return (await session.scalars(query)).all()


async def running_campaigns(session: AsyncSession) -> Sequence[tuple[str, str]]:
    """Return (organisation, id) of every running campaign."""
    query = select(RolloutCampaign.organisation_id, RolloutCampaign.id).where(
        RolloutCampaign.status == CampaignStatus.RUNNING
    )
    return [(org, campaign_id) for org, campaign_id in (await session.execute(query)).all()]


async def candidate_devices(
    session: AsyncSession, organisation_id: str, model_id: str, ward_id: str | None
) -> Sequence[Device]:
    """Return the organisation's in-service devices of the model (in the ward, if given)."""
    query = select(Device).where(
        Device.organisation_id == organisation_id,
        Device.model_id == model_id,
        Device.status != "decommissioned",
    )
    if ward_id is not None:
        query = query.where(Device.ward_id == ward_id)
    return (await session.scalars(query.order_by(Device.id))).all()


UNFINISHED = (TargetStatus.PENDING, *IN_FLIGHT)


async def device_campaign_ids(
    session: AsyncSession, device_id: str, statuses: Collection[str]
) -> list[str]:
    """Return, in id order, the campaigns in which the device has an update in `statuses`."""
    query = (
        select(RolloutTarget.campaign_id)
        .where(RolloutTarget.device_id == device_id, RolloutTarget.status.in_(tuple(statuses)))
        .distinct()
        .order_by(RolloutTarget.campaign_id)
    )
    return list((await session.scalars(query)).all())


async def devices_in_active_campaigns(session: AsyncSession, organisation_id: str) -> set[str]:
    """Return devices with an unfinished update in a running or paused campaign."""
    query = (
        select(RolloutTarget.device_id)
        .join(RolloutCampaign, RolloutCampaign.id == RolloutTarget.campaign_id)
        .where(
            RolloutCampaign.organisation_id == organisation_id,
            RolloutCampaign.status.in_((CampaignStatus.RUNNING, CampaignStatus.PAUSED)),
            RolloutTarget.status.in_(UNFINISHED),
        )
    )
    return set((await session.scalars(query)).all())


async def target_counts(
    session: AsyncSession, campaign_id: str, *, up_to_wave: int | None = None
) -> dict[str, int]:
    """Count a campaign's targets by status (only released waves, if `up_to_wave` is given)."""
    query = (
        select(RolloutTarget.status, func.count())
        .where(RolloutTarget.campaign_id == campaign_id)
        .group_by(RolloutTarget.status)
    )
    if up_to_wave is not None:
        query = query.where(RolloutTarget.wave <= up_to_wave)
    return {status: int(count) for status, count in (await session.execute(query)).all()}


async def wave_counts(session: AsyncSession, campaign_id: str) -> dict[int, int]:
    """Count a campaign's targets per wave."""
    query = (
        select(RolloutTarget.wave, func.count())
        .where(RolloutTarget.campaign_id == campaign_id)
        .group_by(RolloutTarget.wave)
    )
    return {int(wave): int(count) for wave, count in (await session.execute(query)).all()}


async def device_targets(
    session: AsyncSession, device_id: str, statuses: Sequence[str]
) -> Sequence[tuple[RolloutTarget, RolloutCampaign]]:
    """Return the device's targets in these statuses with their campaigns, oldest first."""
    query = (
        select(RolloutTarget, RolloutCampaign)
        .join(RolloutCampaign, RolloutCampaign.id == RolloutTarget.campaign_id)
        .where(RolloutTarget.device_id == device_id, RolloutTarget.status.in_(statuses))
        .order_by(RolloutCampaign.created_at, RolloutCampaign.id)
        .with_for_update(of=RolloutTarget)
    )
    return [(target, campaign) for target, campaign in (await session.execute(query)).all()]


async def stalled_targets(
    session: AsyncSession, before: dt.datetime
) -> Sequence[tuple[RolloutTarget, RolloutCampaign]]:
    """Return in-flight targets last heard of before `before`, with their campaigns."""
    query = (
        select(RolloutTarget, RolloutCampaign)
        .join(RolloutCampaign, RolloutCampaign.id == RolloutTarget.campaign_id)
        .where(RolloutTarget.status.in_(tuple(IN_FLIGHT)), RolloutTarget.updated_at < before)
    )
    return [(target, campaign) for target, campaign in (await session.execute(query)).all()]


async def count_in_flight(session: AsyncSession) -> int:
    """Count updates offered and not yet finished."""
    query = (
        select(func.count())
        .select_from(RolloutTarget)
        .where(RolloutTarget.status.in_(tuple(IN_FLIGHT)))
    )
    return int(await session.scalar(query) or 0)


async def cancel_unfinished(session: AsyncSession, campaign_id: str, at: dt.datetime) -> None:
    """Withdraw the campaign's updates not yet started."""
    await session.execute(
        update(RolloutTarget)
        .where(
            RolloutTarget.campaign_id == campaign_id,
            RolloutTarget.status == TargetStatus.PENDING,
        )
        .values(status=TargetStatus.CANCELLED, updated_at=at)
    )
