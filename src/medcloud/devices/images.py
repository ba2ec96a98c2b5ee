"""Use cases of firmware images: announcing a signed image of a model, uploading its bytes (kept
only if the signature verifies), listing a model's images and streaming one to a device."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.config import Settings
from medcloud.devices import firmware, repository, rollout_repository
from medcloud.devices.models import DeviceModel, FirmwareImage
from medcloud.devices.schemas import FirmwareCreate, FirmwareList, FirmwareRead
from medcloud.platform.audit import audit_record
from medcloud.platform.errors import Conflict, FieldError, Invalid, NotFound, TooLarge
from medcloud.platform.objects import ObjectStore, ObjectTooLarge
from medcloud.platform.policy import authorize_device_write
from medcloud.platform.security import Principal, UserPrincipal
from medcloud.platform.uow import UnitOfWork


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
        profile = await organisation_model(uow.session, principal, model_id)
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
        if await rollout_repository.version_taken(uow.session, profile.id, manifest.version):
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
        profile = await organisation_model(uow.session, principal, model_id)
        image = await rollout_repository.image_by_version(uow.session, profile.id, version)
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
            image = await rollout_repository.get_image(
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
    profile = await organisation_model(session, principal, model_id)
    return FirmwareList(
        items=[_read_image(i) for i in await rollout_repository.images(session, profile.id)]
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
    image = await rollout_repository.get_image(session, principal.organisation_id, image_id)
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


async def organisation_model(
    session: AsyncSession, principal: UserPrincipal, model_id: str
) -> DeviceModel:
    """Return the organisation's device model named in the path; NotFound otherwise."""
    profile = await repository.get_model(session, principal.organisation_id, model_id)
    if profile is None:
        raise NotFound("device model not found")
    return profile


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
