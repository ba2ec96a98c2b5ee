"""Use cases of firmware images and rollout campaigns, and the device's side of an update.

Kept apart from `service.py` (the registry and liveness) because the two change for different
reasons; both are the devices context's use cases and follow the same rules.

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
from collections.abc import AsyncIterable, AsyncIterator, Collection
from dataclasses import dataclass

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.config import Settings
from medcloud.devices import firmware, repository
from medcloud.devices.events import FirmwareUpdateReported, RolloutCampaignChanged
from medcloud.devices.firmware import (
    FAILURES,
    IN_FLIGHT,
    SUCCESSES,
    CampaignStatus,
    Tally,
    TargetStatus,
)
from medcloud.devices.models import (
    Device,
    DeviceModel,
    FirmwareImage,
    RolloutCampaign,
    RolloutTarget,
)
from medcloud.devices.schemas import (
    CampaignCreate,
    CampaignList,
    CampaignRead,
    FirmwareCreate,
    FirmwareList,
    FirmwareRead,
    ProgressRead,
    ProgressReport,
    UpdateOffer,
)
from medcloud.platform.audit import audit_record
from medcloud.platform.errors import Conflict, FieldError, Invalid, NotFound, TooLarge
from medcloud.platform.objects import ObjectStore, ObjectTooLarge
from medcloud.platform.policy import authorize_device_write
from medcloud.platform.security import Principal, UserPrincipal
from medcloud.platform.uow import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)


# --- firmware images -------------------------------------------------------------------------


async def create_image(
    *, uow: UnitOfWork, principal: UserPrincipal, model_id: str, cmd: FirmwareCreate
) -> FirmwareRead:
    """Announce a signed image of a model; it becomes installable once its bytes verify."""
    if not firmware.safe_file_name(cmd.file_name):
        raise Invalid(
            "the file name must be a plain name, not a path",
            errors=[FieldError("file_name", "no path separators, '..' or leading dot")],
        )
    if cmd.signature is None:
        raise Invalid(
            "the image is unsigned", errors=[FieldError("signature", "a signature is required")]
        )
    try:
        firmware.decode_signature(cmd.signature)
    except ValueError as exc:
        raise Invalid(
            "the signature is malformed", errors=[FieldError("signature", str(exc))]
        ) from exc
    manifest = cmd.manifest
    if manifest.min_version is not None and firmware.is_newer(
        manifest.min_version, manifest.version
    ):
        raise Invalid(
            "the minimum version is later than the image",
            errors=[FieldError("manifest.min_version", "later than manifest.version")],
        )
    async with uow:
        profile = await _model(uow.session, principal, model_id)
        now = uow.clock.now()
        if manifest.model != profile.model:
            raise Invalid(
                "the image is for another model",
                errors=[
                    FieldError(
                        "manifest.model",
                        f"the image is for {manifest.model!r}, not {profile.model!r}",
                    )
                ],
            )
        _check_expiry(manifest.expires_at, now)
        if await repository.version_taken(uow.session, profile.id, manifest.version):
            raise Conflict(
                "the model already has an image of this version",
                errors=[FieldError("manifest.version", "already uploaded")],
            )
        signed = firmware.canonical_manifest(
            model=manifest.model,
            version=manifest.version,
            min_version=manifest.min_version,
            expires_at=manifest.expires_at,
        )
        image = FirmwareImage(
            id=str(uuid.uuid4()),
            organisation_id=principal.organisation_id,
            model_id=profile.id,
            file_name=cmd.file_name,
            version=manifest.version,
            min_version=manifest.min_version,
            expires_at=manifest.expires_at,
            manifest=orjson.dumps(signed).decode(),
            signature=cmd.signature,
            status="pending",
            created_at=now,
        )
        uow.session.add(image)
        uow.publish(
            audit_record(
                principal,
                "firmware.create",
                occurred_at=now,
                object_type="firmware_image",
                object_id=image.id,
                detail={"version": image.version, "model_id": profile.id},
            )
        )
        await uow.commit()
    return _read_image(image)


async def upload_image(
    *,
    uow: UnitOfWork,
    store: ObjectStore,
    settings: Settings,
    principal: UserPrincipal,
    model_id: str,
    version: str,
    chunks: AsyncIterable[bytes],
) -> FirmwareRead:
    """Stream an announced image's bytes to storage; keep them only if the signature verifies."""
    # No transaction stays open while the bytes stream in: on SQLite it would hold the write lock.
    async with uow:
        profile = await _model(uow.session, principal, model_id)
        image = await repository.image_by_version(uow.session, profile.id, version)
        if image is None:
            raise NotFound("firmware image not found")
        if image.status != "pending":
            raise Conflict("the image is already uploaded")
        image_id = image.id
        key, manifest, signature = profile.signing_public_key, image.manifest, image.signature
    try:
        stored = await store.put(
            f"firmware/{uuid.uuid4().hex}", chunks, max_bytes=settings.devices.firmware_max_bytes
        )
    except ObjectTooLarge as exc:
        raise TooLarge(
            f"firmware images are limited to {settings.devices.firmware_max_bytes} bytes",
            errors=[FieldError("body", str(exc))],
        ) from exc
    try:
        message = firmware.signed_message(stored.sha256, orjson.loads(manifest))
        if not firmware.verify(key, signature, message):
            raise Invalid(
                "the signature does not match this image and manifest",
                errors=[
                    FieldError(
                        "signature",
                        "does not verify against the model's key: the image or its manifest "
                        "was altered, or another key signed it",
                    )
                ],
            )
        async with uow:
            image = await repository.get_image(
                uow.session, principal.organisation_id, image_id, for_update=True
            )
            if image is None or image.status != "pending":
                raise Conflict("the image is already uploaded")
            now = uow.clock.now()
            _check_expiry(image.expires_at, now)
            image.sha256, image.size_bytes, image.storage_key = (
                stored.sha256,
                stored.size,
                stored.key,
            )
            image.status, image.verified_at = "verified", now
            uow.publish(
                audit_record(
                    principal,
                    "firmware.upload",
                    occurred_at=now,
                    object_type="firmware_image",
                    object_id=image.id,
                    detail={"sha256": stored.sha256, "size_bytes": stored.size},
                )
            )
            await uow.commit()
    except BaseException:
        await store.delete(stored.key)
        raise
    return _read_image(image)


async def list_images(
    *, session: AsyncSession, principal: UserPrincipal, model_id: str
) -> FirmwareList:
    """Return a model's images, newest first."""
    profile = await _model(session, principal, model_id)
    return FirmwareList(
        items=[_read_image(i) for i in await repository.images(session, profile.id)]
    )


@dataclass(frozen=True)
class ImageDownload:
    """An image's bytes as a stream, with what a response needs to describe them."""

    file_name: str
    size: int
    sha256: str
    chunks: AsyncIterator[bytes]


async def download_image(
    *,
    session: AsyncSession,
    store: ObjectStore,
    principal: Principal,
    device_id: str,
    image_id: str,
) -> ImageDownload:
    """Stream a verified image of the device's own model to the device."""
    authorize_device_write(principal, device_id)
    device = await repository.get_in_organisation(session, principal.organisation_id, device_id)
    image = await repository.get_image(session, principal.organisation_id, image_id)
    if (
        device is None
        or image is None
        or image.status != "verified"
        or image.model_id != device.model_id
        or image.storage_key is None
        or image.sha256 is None
        or image.size_bytes is None
    ):
        raise NotFound("firmware image not found")
    return ImageDownload(
        file_name=image.file_name,
        size=image.size_bytes,
        sha256=image.sha256,
        chunks=store.read(image.storage_key),
    )


def _check_expiry(expires_at: dt.datetime, now: dt.datetime) -> None:
    if expires_at <= now:
        raise Invalid(
            "the manifest has expired",
            errors=[
                FieldError(
                    "manifest.expires_at", f"expired at {firmware.manifest_timestamp(expires_at)}"
                )
            ],
        )


async def _model(session: AsyncSession, principal: UserPrincipal, model_id: str) -> DeviceModel:
    profile = await repository.get_model(session, principal.organisation_id, model_id)
    if profile is None:
        raise NotFound("device model not found")
    return profile


# --- campaigns ---------------------------------------------------------------------------------


async def create_campaign(
    *, uow: UnitOfWork, principal: UserPrincipal, model_id: str, cmd: CampaignCreate
) -> CampaignRead:
    """Plan a staged rollout: pick the devices, split them into waves, release the first."""
    async with uow:
        profile = await _model(uow.session, principal, model_id)
        now = uow.clock.now()
        image = await repository.get_image(uow.session, principal.organisation_id, cmd.image_id)
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
        busy = await repository.devices_in_active_campaigns(uow.session, principal.organisation_id)
        candidates = await repository.candidate_devices(
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
    for campaign in await repository.campaigns(session, principal.organisation_id):
        image = await session.get(FirmwareImage, campaign.image_id)
        items.append(await _read_campaign(session, campaign, image.version if image else "?"))
    return CampaignList(items=items)


async def get_campaign(
    *, session: AsyncSession, principal: UserPrincipal, campaign_id: str
) -> CampaignRead:
    """Return one campaign with its devices counted by update status."""
    campaign = await repository.get_campaign(session, principal.organisation_id, campaign_id)
    if campaign is None:
        raise NotFound("campaign not found")
    image = await session.get(FirmwareImage, campaign.image_id)
    return await _read_campaign(session, campaign, image.version if image else "?")


async def change_campaign(
    *, uow: UnitOfWork, principal: UserPrincipal, campaign_id: str, action: str
) -> CampaignRead:
    """Pause, resume or cancel a campaign; asking for the state it is in changes nothing."""
    async with uow:
        campaign = await repository.get_campaign(
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
                _set(uow, campaign, CampaignStatus.PAUSED, "paused by a user", now)
            elif action == "cancel":
                await repository.cancel_unfinished(uow.session, campaign.id, now)
                _set(uow, campaign, CampaignStatus.CANCELLED, "cancelled by a user", now)
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
    counts = await repository.target_counts(
        uow.session, campaign.id, up_to_wave=campaign.current_wave
    )
    tally = _tally(counts)
    campaign.failures_accepted = tally.failed
    _set(uow, campaign, CampaignStatus.RUNNING, "resumed by a user", now)
    if tally.finished == tally.released:
        last = max((await repository.wave_counts(uow.session, campaign.id)).keys(), default=0)
        if campaign.current_wave < last:
            campaign.current_wave += 1
            _announce(uow, campaign, f"wave {campaign.current_wave + 1} started")
    await _evaluate(uow, campaign, now)


def _set(
    uow: UnitOfWork, campaign: RolloutCampaign, status: str, reason: str, now: dt.datetime
) -> None:
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
    last = max((await repository.wave_counts(uow.session, campaign.id)).keys(), default=0)
    while True:
        counts = await repository.target_counts(
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
            _set(uow, campaign, CampaignStatus.COMPLETED, "every wave finished", now)
        elif decision.action == "pause":
            log.warning("rollout.paused", campaign_id=campaign.id, reason=decision.reason)
            _set(uow, campaign, CampaignStatus.PAUSED, decision.reason or "paused", now)
        return


async def _evaluate_by_id(uow: UnitOfWork, organisation_id: str, campaign_id: str) -> None:
    campaign = await repository.get_campaign(
        uow.session, organisation_id, campaign_id, for_update=True
    )
    if campaign is not None:
        await _evaluate(uow, campaign, uow.clock.now())


async def advance_campaigns(*, uow_factory: UnitOfWorkFactory) -> None:
    """Re-evaluate every running campaign, each in its own transaction."""
    async with uow_factory() as uow:
        running = await repository.running_campaigns(uow.session)
    for organisation_id, campaign_id in running:
        async with uow_factory() as uow:
            await _evaluate_by_id(uow, organisation_id, campaign_id)
            await uow.commit()


async def _read_campaign(
    session: AsyncSession, campaign: RolloutCampaign, version: str
) -> CampaignRead:
    per_wave = await repository.wave_counts(session, campaign.id)
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
        targets=await repository.target_counts(session, campaign.id),
        created_at=campaign.created_at,
        updated_at=campaign.updated_at,
    )


# --- the device's side -------------------------------------------------------------------------


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
        await lock_campaigns_of(uow, device, repository.UNFINISHED)
        for target, campaign in await repository.device_targets(
            uow.session, device.id, repository.UNFINISHED
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
            _set(uow, campaign, CampaignStatus.PAUSED, "the image's manifest has expired", now)
            return None
        if device.firmware_version is not None and not firmware.is_newer(
            image.version, device.firmware_version
        ):
            # Anti-rollback: never offer a version that is not newer than the device's.
            _move(uow, target, campaign, image, TargetStatus.SKIPPED, now, "already up to date")
            await _evaluate_by_id(uow, campaign.organisation_id, campaign.id)
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
        await lock_campaigns_of(uow, device, IN_FLIGHT)
        under_way = [
            (target, campaign)
            for target, campaign in await repository.device_targets(
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
            await _evaluate_by_id(uow, campaign.organisation_id, campaign.id)
        await uow.commit()
    return ProgressRead(campaign_id=campaign.id, status=target.status, reason=target.reason)


async def reconcile_version(
    uow: UnitOfWork, device: Device, version: str, now: dt.datetime
) -> None:
    """Judge updates by the version a device reports: the new one succeeded, the old one rolled
    back (a device that restarts on its previous firmware has undone the update)."""
    watched = (*IN_FLIGHT, TargetStatus.SUCCEEDED)
    await lock_campaigns_of(uow, device, watched)
    for target, campaign in await repository.device_targets(uow.session, device.id, watched):
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
        await _evaluate_by_id(uow, campaign.organisation_id, campaign.id)


async def time_out_updates(*, uow: UnitOfWork, settings: Settings) -> int:
    """Fail updates a device has been silent about for too long; return how many."""
    timeout = settings.devices.update_timeout_seconds
    async with uow:
        now = uow.clock.now()
        silent_since = now - dt.timedelta(seconds=timeout)
        stalled = await repository.stalled_targets(uow.session, silent_since)
        organisations = {campaign.id: campaign.organisation_id for _, campaign in stalled}
        # Campaigns before updates (see the module's lock order). The updates were read unlocked,
        # so each is read again under its lock: its device may have reported meanwhile, and
        # overwriting that report would fail an update the device was told had succeeded.
        for campaign_id in sorted(organisations):
            await repository.get_campaign(
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
            await _evaluate_by_id(uow, organisations[campaign_id], campaign_id)
        await uow.commit()
    return timed_out


async def lock_campaigns_of(uow: UnitOfWork, device: Device, statuses: Collection[str]) -> None:
    """Lock the campaigns of the device's updates in `statuses`, in id order, before the updates.

    Call with the device locked: then no update of it can appear (inserting one takes a key-share
    lock on the device row) or move into these statuses (only paths holding the device do that),
    so the updates locked next all belong to campaigns locked here.
    """
    campaign_ids = await repository.device_campaign_ids(uow.session, device.id, statuses)
    for campaign_id in campaign_ids:
        await repository.get_campaign(
            uow.session, device.organisation_id, campaign_id, for_update=True
        )


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


def _read_image(image: FirmwareImage) -> FirmwareRead:
    return FirmwareRead(
        id=image.id,
        model_id=image.model_id,
        file_name=image.file_name,
        version=image.version,
        min_version=image.min_version,
        expires_at=image.expires_at,
        manifest=orjson.loads(image.manifest),
        signature=image.signature,
        sha256=image.sha256,
        size_bytes=image.size_bytes,
        status=image.status,
        created_at=image.created_at,
        verified_at=image.verified_at,
    )
