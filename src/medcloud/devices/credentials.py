"""Use cases of device credentials: rotating and revoking a device's tokens, and listing them;
and the helpers the registry shares to issue a token and forget cached lookups of old ones."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.devices import repository
from medcloud.devices.models import DeviceCredential
from medcloud.devices.mqtt import NO_BROKER, BrokerAccess
from medcloud.devices.schemas import (
    CredentialIssued,
    CredentialList,
    CredentialRead,
    CredentialRotate,
)
from medcloud.platform.audit import audit_record
from medcloud.platform.cache import Cache
from medcloud.platform.errors import NotFound
from medcloud.platform.security import (
    UserPrincipal,
    device_cache_key,
    hash_device_token,
    new_device_token,
)
from medcloud.platform.uow import UnitOfWork


async def rotate_credentials(
    *,
    uow: UnitOfWork,
    cache: Cache,
    principal: UserPrincipal,
    device_id: str,
    cmd: CredentialRotate,
    broker: BrokerAccess = NO_BROKER,
) -> CredentialIssued:
    """Issue a new token; the device's previous tokens keep working for the grace period.

    Over MQTT there is no grace period: the broker holds one password per client, so the new
    token replaces the old one there at once (a device that had none yet is given one).
    """
    token = new_device_token()
    async with uow:
        device = await repository.lock_in_organisation(
            uow.session, principal.organisation_id, device_id
        )
        now = uow.clock.now()
        valid_until = now + dt.timedelta(seconds=cmd.grace_seconds)
        held = await repository.credentials(uow.session, principal.organisation_id, device_id)
        shortened = [old for old in held if old.expire_by(valid_until)]
        credential = new_credential(device.id, token, now)
        uow.session.add(credential)
        # Before the commit, so a broker that does not confirm leaves the old token in force.
        await broker.change_password(device.id, token)
        uow.publish(
            audit_record(
                principal,
                "device.credentials.rotate",
                occurred_at=now,
                object_type="device",
                object_id=device.id,
                patient_id=device.patient_id,
                detail={"credential_id": credential.id, "grace_seconds": cmd.grace_seconds},
            )
        )
        await uow.commit()
    # After the commit: deleted before it, a lookup running meanwhile could cache the old state.
    await forget(cache, shortened)
    return CredentialIssued(
        **CredentialRead.model_validate(credential).model_dump(),
        token=token,
        previous_valid_until=valid_until,
    )


async def revoke_credentials(
    *,
    uow: UnitOfWork,
    cache: Cache,
    principal: UserPrincipal,
    device_id: str,
    broker: BrokerAccess = NO_BROKER,
) -> CredentialList:
    """Stop every token of the device at once (over MQTT too: its broker client is disabled)."""
    async with uow:
        device = await repository.lock_in_organisation(
            uow.session, principal.organisation_id, device_id
        )
        now = uow.clock.now()
        held = await repository.credentials(uow.session, principal.organisation_id, device_id)
        revoked = [credential for credential in held if credential.revoke(now)]
        # Before the commit: revoked only once the broker has cut the device off too.
        await broker.suspend(device.id)
        uow.publish(
            audit_record(
                principal,
                "device.credentials.revoke",
                occurred_at=now,
                object_type="device",
                object_id=device.id,
                patient_id=device.patient_id,
                detail={"revoked": len(revoked)},
            )
        )
        await uow.commit()
    await forget(cache, revoked)
    return CredentialList(items=[CredentialRead.model_validate(credential) for credential in held])


async def list_credentials(
    *, session: AsyncSession, principal: UserPrincipal, device_id: str
) -> CredentialList:
    """Return the credentials of a device of the principal's organisation, newest first."""
    device = await repository.get_in_organisation(session, principal.organisation_id, device_id)
    if device is None:
        raise NotFound("device not found")
    held = await repository.credentials(session, principal.organisation_id, device_id)
    return CredentialList(items=[CredentialRead.model_validate(credential) for credential in held])


def new_credential(device_id: str, token: str, now: dt.datetime) -> DeviceCredential:
    """Return a working credential of the device for this token (only its hash is kept)."""
    return DeviceCredential(
        id=str(uuid.uuid4()),
        device_id=device_id,
        token_hash=hash_device_token(token),
        created_at=now,
        expires_at=None,
        revoked_at=None,
        last_used_at=None,
    )


async def forget(cache: Cache, credentials: Iterable[DeviceCredential]) -> None:
    """Drop the cached lookups of these credentials' tokens."""
    for credential in credentials:
        await cache.delete(device_cache_key(credential.token_hash))
