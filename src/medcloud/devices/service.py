"""Use cases of the devices context."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import Iterable, Mapping

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.config import Settings
from medcloud.devices import firmware, repository, rollouts
from medcloud.devices.events import (
    DeviceAlertRaised,
    DeviceAlertResolved,
    DeviceAssignmentChanged,
    DeviceStatusChanged,
)
from medcloud.devices.events import DeviceRegistered as DeviceRegisteredEvent
from medcloud.devices.models import (
    Device,
    DeviceAlert,
    DeviceAssignment,
    DeviceCredential,
    DeviceModel,
)
from medcloud.devices.mqtt import NO_BROKER, BrokerAccess, BrokerUnavailable
from medcloud.devices.schemas import (
    AssignmentList,
    AssignmentRead,
    AssignmentSet,
    CredentialIssued,
    CredentialList,
    CredentialRead,
    CredentialRotate,
    DeviceAlertPage,
    DeviceAlertRead,
    DeviceCreate,
    DeviceModelCreate,
    DeviceModelList,
    DeviceModelRead,
    DevicePage,
    DeviceRead,
    DeviceRegistered,
    DeviceStatusRead,
    DeviceUpdate,
    HeartbeatIn,
)
from medcloud.platform.audit import audit_record
from medcloud.platform.cache import Cache
from medcloud.platform.clock import Clock
from medcloud.platform.directory import CareDirectory, PatientDirectory
from medcloud.platform.errors import Conflict, FieldError, Invalid, NotFound, OutOfScope
from medcloud.platform.metrics import Metrics
from medcloud.platform.paging import decode_cursor, encode_cursor
from medcloud.platform.policy import authorize_device_write
from medcloud.platform.security import (
    Principal,
    Role,
    UserPrincipal,
    device_cache_key,
    hash_device_token,
    new_device_token,
)
from medcloud.platform.uow import UnitOfWork, UnitOfWorkFactory


async def register_device(
    *,
    uow: UnitOfWork,
    patients: PatientDirectory,
    principal: UserPrincipal,
    cmd: DeviceCreate,
    broker: BrokerAccess = NO_BROKER,
) -> DeviceRegistered:
    """Register a device in the principal's organisation and issue its first token.

    With MQTT configured its broker credentials are created first, outside the transaction (no
    lock is held while the broker answers): a registered device always has working MQTT
    credentials, and if the broker does not confirm them nothing is registered (503). A broker
    client left by a registration that fails afterwards is removed, or harmless if that fails
    too: its password is a token nobody was given.
    """
    token = new_device_token()
    if cmd.patient_id is not None:
        await _check_patient(patients, principal, cmd.patient_id)
    device_id = str(uuid.uuid4())
    await broker.grant(device_id, token)
    try:
        return await _register(uow, principal, cmd, device_id, token)
    except Exception:
        with contextlib.suppress(BrokerUnavailable):
            await broker.remove(device_id)
        raise


async def _register(
    uow: UnitOfWork, principal: UserPrincipal, cmd: DeviceCreate, device_id: str, token: str
) -> DeviceRegistered:
    async with uow:
        if await repository.serial_taken(uow.session, principal.organisation_id, cmd.serial_number):
            raise Conflict(
                "a device with this serial number is already registered",
                errors=[FieldError("serial_number", "already registered")],
            )
        profile: DeviceModel | None
        if cmd.model_id is not None:
            profile = await _model(uow.session, principal, cmd.model_id)
        else:
            assert cmd.manufacturer is not None and cmd.model is not None  # noqa: S101  (validated)
            profile = await repository.find_model(
                uow.session, principal.organisation_id, cmd.manufacturer, cmd.model
            )
        now = uow.clock.now()
        device = Device(
            id=device_id,
            organisation_id=principal.organisation_id,
            serial_number=cmd.serial_number,
            model=profile.model if profile else cmd.model,
            manufacturer=profile.manufacturer if profile else cmd.manufacturer,
            model_id=profile.id if profile else None,
            patient_id=cmd.patient_id,
            udi=cmd.udi,
            hardware_revision=cmd.hardware_revision,
            firmware_version=cmd.firmware_version,
            ward_id=cmd.ward_id,
            location=cmd.location,
            status="unknown",
            created_at=now,
            last_seen_at=None,
        )
        uow.session.add(device)
        # Flushed first so that the device row exists when its credential's foreign key is checked.
        await uow.session.flush()
        uow.session.add(_credential(device.id, token, now))
        if device.patient_id is not None:
            uow.session.add(_assignment(device.id, device.patient_id, now))
        uow.publish(
            DeviceRegisteredEvent(
                organisation_id=device.organisation_id,
                device_id=device.id,
                serial_number=device.serial_number,
                model=device.model,
                manufacturer=device.manufacturer,
                patient_id=device.patient_id,
            )
        )
        uow.publish(
            audit_record(
                principal,
                "device.create",
                occurred_at=now,
                object_type="device",
                object_id=device.id,
                patient_id=device.patient_id,
            )
        )
        await uow.commit()
    return DeviceRegistered(**_read(device).model_dump(), token=token)


async def update_device(
    *,
    uow: UnitOfWork,
    cache: Cache,
    principal: UserPrincipal,
    device_id: str,
    cmd: DeviceUpdate,
    broker: BrokerAccess = NO_BROKER,
) -> DeviceRead:
    """Change a device's details, or decommission it (its history stays, its MQTT client goes)."""
    changes = cmd.model_dump(exclude_unset=True)
    revoked: list[DeviceCredential] = []
    async with uow:
        device = await repository.lock_in_organisation(
            uow.session, principal.organisation_id, device_id
        )
        if device.status == "decommissioned":
            raise Conflict("the device is decommissioned; it can no longer change")
        now = uow.clock.now()
        if changes.get("model_id") is not None:
            profile = await _model(uow.session, principal, changes["model_id"])
            device.model, device.manufacturer = profile.model, profile.manufacturer
        for field in ("udi", "hardware_revision", "ward_id", "location", "model_id"):
            if field in changes:
                setattr(device, field, changes[field])
        action = "device.update"
        if changes.get("decommissioned"):
            action = "device.decommission"
            revoked = await _decommission(uow, device, now)
            # Before the commit: a broker that does not confirm leaves the device as it was.
            await broker.remove(device.id)
        uow.publish(
            audit_record(
                principal,
                action,
                occurred_at=now,
                object_type="device",
                object_id=device.id,
                patient_id=device.patient_id,
                detail={"fields": sorted(changes)},
            )
        )
        await uow.commit()
    await _forget(cache, revoked)
    return _read(device)


async def _decommission(
    uow: UnitOfWork, device: Device, now: dt.datetime
) -> list[DeviceCredential]:
    """End the assignment, stop the tokens and pending updates, close alerts; keep the rows."""
    await _end_assignment(uow, device, now)
    held = await repository.credentials(uow.session, device.organisation_id, device.id)
    revoked = [credential for credential in held if credential.revoke(now)]
    for kind in (OFFLINE, LOW_BATTERY):
        await _resolve_alert(uow, device, kind, now)
    # Campaigns before their updates: the one lock order every rollout path keeps.
    await rollouts.lock_campaigns_of(uow, device, repository.UNFINISHED)
    for target, _campaign in await repository.device_targets(
        uow.session, device.id, repository.UNFINISHED
    ):
        target.status, target.reason, target.updated_at = "cancelled", "decommissioned", now
    device.decommissioned_at = now
    _set_status(uow, device, "decommissioned", now)
    return revoked


async def assign_device(
    *,
    uow: UnitOfWork,
    patients: PatientDirectory,
    cache: Cache,
    principal: UserPrincipal,
    device_id: str,
    cmd: AssignmentSet,
) -> AssignmentList:
    """Attach the device to a patient from now on (ending any current assignment), or detach it."""
    async with uow:
        # The device first: another organisation's device is not found, whatever the patient.
        device = await repository.lock_in_organisation(
            uow.session, principal.organisation_id, device_id
        )
        if cmd.patient_id is not None:
            await _check_patient(patients, principal, cmd.patient_id)
        if device.status == "decommissioned":
            raise Conflict(
                "a decommissioned device cannot be assigned",
                errors=[FieldError("patient_id", "the device is decommissioned")],
            )
        if device.patient_id != cmd.patient_id:
            now = uow.clock.now()
            previous = device.patient_id
            await _end_assignment(uow, device, now, announce=False)
            if cmd.patient_id is not None:
                uow.session.add(_assignment(device.id, cmd.patient_id, now))
            device.patient_id = cmd.patient_id
            uow.publish(
                DeviceAssignmentChanged(
                    organisation_id=device.organisation_id,
                    device_id=device.id,
                    patient_id=cmd.patient_id,
                    previous_patient_id=previous,
                    at=now,
                )
            )
            uow.publish(
                audit_record(
                    principal,
                    "device.assign",
                    occurred_at=now,
                    object_type="device",
                    object_id=device.id,
                    patient_id=cmd.patient_id or previous,
                    detail={"previous_patient_id": previous},
                )
            )
            await uow.session.flush()
        held = await repository.credentials(uow.session, device.organisation_id, device.id)
        history = await repository.assignments(uow.session, device.id)
        await uow.commit()
    # A cached token names the device's patient; forget it so readings go to the new one.
    await _forget(cache, held)
    return AssignmentList(items=[_read_assignment(a) for a in history])


async def list_assignments(
    *, session: AsyncSession, care: CareDirectory, principal: UserPrincipal, device_id: str
) -> AssignmentList:
    """Return a visible device's assignment history, newest first."""
    await _visible_device(session, care, principal, device_id)
    history = await repository.assignments(session, device_id)
    return AssignmentList(items=[_read_assignment(a) for a in history])


async def _end_assignment(
    uow: UnitOfWork, device: Device, now: dt.datetime, *, announce: bool = True
) -> None:
    current = await repository.current_assignment(uow.session, device.id)
    if current is not None:
        current.ended_at = now
    if announce and device.patient_id is not None:
        uow.publish(
            DeviceAssignmentChanged(
                organisation_id=device.organisation_id,
                device_id=device.id,
                patient_id=None,
                previous_patient_id=device.patient_id,
                at=now,
            )
        )
    if announce:
        device.patient_id = None


async def _check_patient(
    patients: PatientDirectory, principal: UserPrincipal, patient_id: str
) -> None:
    patient = await patients.get(patient_id)
    if patient is None or patient.organisation_id != principal.organisation_id:
        raise Invalid(
            "the device cannot be assigned to that patient",
            errors=[FieldError("patient_id", "no such patient")],
        )


async def _model(session: AsyncSession, principal: UserPrincipal, model_id: str) -> DeviceModel:
    profile = await repository.get_model(session, principal.organisation_id, model_id)
    if profile is None:
        raise Invalid(
            "no such device model", errors=[FieldError("model_id", "no such device model")]
        )
    return profile


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
        credential = _credential(device.id, token, now)
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
    await _forget(cache, shortened)
    return CredentialIssued(
        **_read_credential(credential).model_dump(), token=token, previous_valid_until=valid_until
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
    await _forget(cache, revoked)
    return CredentialList(items=[_read_credential(credential) for credential in held])


async def list_credentials(
    *, session: AsyncSession, principal: UserPrincipal, device_id: str
) -> CredentialList:
    """Return the credentials of a device of the principal's organisation, newest first."""
    device = await repository.get_in_organisation(session, principal.organisation_id, device_id)
    if device is None:
        raise NotFound("device not found")
    held = await repository.credentials(session, principal.organisation_id, device_id)
    return CredentialList(items=[_read_credential(credential) for credential in held])


async def _visible_patients(care: CareDirectory, principal: UserPrincipal) -> frozenset[str] | None:
    """Return the patients whose devices a clinician or nurse may see; None: every device.

    Admins and technicians look after every device of the organisation; clinical staff see
    only the devices of the patients in their care, since a device names its patient.
    """
    if principal.role not in (Role.CLINICIAN, Role.NURSE):
        return None
    scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
    return scope.patient_ids


async def _visible_device(
    session: AsyncSession, care: CareDirectory, principal: UserPrincipal, device_id: str
) -> Device:
    device = await repository.get_in_organisation(session, principal.organisation_id, device_id)
    if device is None:
        raise NotFound("device not found")
    visible = await _visible_patients(care, principal)
    if visible is not None and device.patient_id not in visible:
        raise OutOfScope("device not found")
    return device


async def get_device(
    *, session: AsyncSession, care: CareDirectory, principal: UserPrincipal, device_id: str
) -> DeviceRead:
    """Return a device of the principal's organisation, within a clinician's care scope."""
    return _read(await _visible_device(session, care, principal, device_id))


async def list_devices(
    *,
    session: AsyncSession,
    care: CareDirectory,
    principal: UserPrincipal,
    limit: int,
    cursor: str | None,
    where: repository.DeviceFilter | None = None,
) -> DevicePage:
    """Return one page of the devices the principal may see, newest first, filtered."""
    after = decode_cursor(cursor) if cursor else None
    devices = await repository.page(
        session,
        principal.organisation_id,
        patients=await _visible_patients(care, principal),
        limit=limit + 1,
        after=after,
        where=where or repository.DeviceFilter(),
    )
    items = [_read(device) for device in devices[:limit]]
    next_cursor = None
    if len(devices) > limit:
        last = devices[limit - 1]
        next_cursor = encode_cursor(last.created_at, last.id)
    return DevicePage(items=items, next_cursor=next_cursor)


async def create_model(
    *, uow: UnitOfWork, principal: UserPrincipal, cmd: DeviceModelCreate
) -> DeviceModelRead:
    """Register a device model; the organisation's devices that name it are linked to it."""
    try:
        firmware.load_public_key(cmd.signing_public_key)
    except ValueError as exc:
        raise Invalid(
            "the signing key is not usable",
            errors=[FieldError("signing_public_key", f"{exc}: give a PEM Ed25519 public key")],
        ) from exc
    async with uow:
        if await repository.find_model(
            uow.session, principal.organisation_id, cmd.manufacturer, cmd.model
        ):
            raise Conflict(
                "this model is already registered",
                errors=[FieldError("model", "already registered for this manufacturer")],
            )
        now = uow.clock.now()
        profile = DeviceModel(
            id=str(uuid.uuid4()),
            organisation_id=principal.organisation_id,
            manufacturer=cmd.manufacturer,
            model=cmd.model,
            measurement_types=orjson.dumps(cmd.measurement_types).decode(),
            reporting_interval_seconds=cmd.reporting_interval_seconds,
            signing_public_key=cmd.signing_public_key.strip() + "\n",
            created_at=now,
        )
        uow.session.add(profile)
        await uow.session.flush()
        await repository.adopt_devices(uow.session, profile)
        uow.publish(
            audit_record(
                principal,
                "device_model.create",
                occurred_at=now,
                object_type="device_model",
                object_id=profile.id,
            )
        )
        await uow.commit()
    return _read_model(profile)


async def list_models(*, session: AsyncSession, principal: UserPrincipal) -> DeviceModelList:
    """Return the organisation's device models."""
    found = await repository.models(session, principal.organisation_id)
    return DeviceModelList(items=[_read_model(profile) for profile in found])


async def get_model(
    *, session: AsyncSession, principal: UserPrincipal, model_id: str
) -> DeviceModelRead:
    """Return one of the organisation's device models."""
    profile = await repository.get_model(session, principal.organisation_id, model_id)
    if profile is None:
        raise NotFound("device model not found")
    return _read_model(profile)


OFFLINE = "device_offline"
LOW_BATTERY = "low_battery"


async def record_heartbeat(
    *,
    uow: UnitOfWork,
    settings: Settings,
    principal: Principal,
    device_id: str,
    beat: HeartbeatIn,
) -> DeviceStatusRead:
    """Take a device's heartbeat: it is online, and its battery and firmware are as it says."""
    authorize_device_write(principal, device_id)
    async with uow:
        device = await repository.get_in_organisation(
            uow.session, principal.organisation_id, device_id, for_update=True
        )
        if device is None:
            raise NotFound("device not found")
        now = uow.clock.now()
        device.last_heartbeat_at = now
        if device.last_seen_at is None or device.last_seen_at < now:
            device.last_seen_at = now
        if beat.signal_strength_dbm is not None:
            device.signal_strength_dbm = beat.signal_strength_dbm
        if beat.uptime_seconds is not None:
            device.uptime_seconds = beat.uptime_seconds
        await _come_online(uow, device, now)
        if beat.battery_percent is not None:
            device.battery_percent = beat.battery_percent
            if beat.battery_percent <= settings.devices.low_battery_percent:
                await _raise_alert(
                    uow,
                    device,
                    LOW_BATTERY,
                    "medium",
                    f"battery at {beat.battery_percent:g}%",
                    now,
                )
            else:
                await _resolve_alert(uow, device, LOW_BATTERY, now)
        if beat.firmware_version is not None:
            device.firmware_version = beat.firmware_version
            await rollouts.reconcile_version(uow, device, beat.firmware_version, now)
        await uow.commit()
    return DeviceStatusRead(
        device_id=device.id,
        status=device.status,
        last_seen_at=device.last_seen_at,
        firmware_version=device.firmware_version,
    )


async def record_activity(*, uow: UnitOfWork, seen: Mapping[str, dt.datetime]) -> None:
    """Note when devices were last heard from; silent ones are back online."""
    await repository.touch(uow.session, seen)
    now = uow.clock.now()
    for device in await repository.not_online(uow.session, seen):
        await _come_online(uow, device, now)


async def _come_online(uow: UnitOfWork, device: Device, now: dt.datetime) -> None:
    if device.status in ("unknown", "offline"):
        _set_status(uow, device, "online", now)
        await _resolve_alert(uow, device, OFFLINE, now)


def _set_status(uow: UnitOfWork, device: Device, status: str, now: dt.datetime) -> None:
    if device.status == status:
        return
    previous, device.status, device.status_changed_at = device.status, status, now
    uow.publish(
        DeviceStatusChanged(
            organisation_id=device.organisation_id,
            device_id=device.id,
            patient_id=device.patient_id,
            previous=previous,
            status=status,
            last_seen_at=device.last_seen_at,
            changed_at=now,
        )
    )


async def _raise_alert(
    uow: UnitOfWork, device: Device, kind: str, severity: str, message: str, now: dt.datetime
) -> None:
    if await repository.open_alert(uow.session, device.id, kind) is not None:
        return
    alert = DeviceAlert(
        id=str(uuid.uuid4()),
        organisation_id=device.organisation_id,
        device_id=device.id,
        patient_id=device.patient_id,
        kind=kind,
        severity=severity,
        message=message,
        raised_at=now,
        resolved_at=None,
    )
    uow.session.add(alert)
    uow.publish(
        DeviceAlertRaised(
            organisation_id=device.organisation_id,
            alert_id=alert.id,
            device_id=device.id,
            patient_id=device.patient_id,
            kind=kind,
            severity=severity,
            message=message,
            raised_at=now,
        )
    )


async def _resolve_alert(uow: UnitOfWork, device: Device, kind: str, now: dt.datetime) -> None:
    alert = await repository.open_alert(uow.session, device.id, kind)
    if alert is None:
        return
    alert.resolved_at = now
    uow.publish(
        DeviceAlertResolved(
            organisation_id=device.organisation_id,
            alert_id=alert.id,
            device_id=device.id,
            kind=kind,
            resolved_at=now,
            # Whole, so a consumer that sees the resolution before the raise can record both.
            patient_id=alert.patient_id,
            severity=alert.severity,
            message=alert.message,
            raised_at=alert.raised_at,
        )
    )


async def list_device_alerts(
    *,
    session: AsyncSession,
    care: CareDirectory,
    principal: UserPrincipal,
    device_id: str | None,
    open_only: bool,
    limit: int,
    cursor: str | None,
) -> DeviceAlertPage:
    """Return technical alerts about devices the principal may see, newest first."""
    after = decode_cursor(cursor) if cursor else None
    alerts = await repository.alerts_page(
        session,
        principal.organisation_id,
        patients=await _visible_patients(care, principal),
        device_id=device_id,
        open_only=open_only,
        limit=limit + 1,
        after=after,
    )
    items = [_read_alert(alert) for alert in alerts[:limit]]
    next_cursor = None
    if len(alerts) > limit:
        last = alerts[limit - 1]
        next_cursor = encode_cursor(last.raised_at, last.id)
    return DeviceAlertPage(items=items, next_cursor=next_cursor)


async def mark_silent_devices(*, uow: UnitOfWork, settings: Settings) -> int:
    """Mark devices silent for their allowed number of intervals offline; return how many."""
    missed = settings.devices.offline_after_missed_intervals
    default_interval = settings.devices.default_reporting_interval_seconds
    async with uow:
        now = uow.clock.now()
        silent = 0
        for device, interval in await repository.online_with_interval(uow.session):
            allowed = dt.timedelta(seconds=missed * (interval or default_interval))
            if device.last_seen_at is not None and now - device.last_seen_at <= allowed:
                continue
            silent += 1
            _set_status(uow, device, "offline", now)
            if device.patient_id is not None:
                # Stale data about a patient is a clinical risk: someone must look at the device.
                await _raise_alert(
                    uow,
                    device,
                    OFFLINE,
                    "high",
                    "no data from a device in use on a patient",
                    now,
                )
        await uow.commit()
    return silent


async def refresh_status_gauges(
    *, read_sessions: async_sessionmaker[AsyncSession], metrics: Metrics
) -> None:
    """Set the per-status device gauges and the updates-in-flight gauge."""
    async with read_sessions() as session:
        counts = await repository.count_by_status(session)
        in_flight = await repository.count_in_flight(session)
    for status in ("unknown", "online", "offline", "decommissioned"):
        metrics.devices_by_status.labels(status).set(counts.get(status, 0))
    metrics.firmware_updates_in_progress.set(in_flight)


async def check_devices(
    *,
    uow_factory: UnitOfWorkFactory,
    read_sessions: async_sessionmaker[AsyncSession],
    metrics: Metrics,
    settings: Settings,
) -> None:
    """One pass of the monitor: silent devices offline, stalled updates failed, campaigns on."""
    await mark_silent_devices(uow=uow_factory(), settings=settings)
    await rollouts.time_out_updates(uow=uow_factory(), settings=settings)
    await rollouts.advance_campaigns(uow_factory=uow_factory)
    await refresh_status_gauges(read_sessions=read_sessions, metrics=metrics)


async def monitor_devices(
    *,
    uow_factory: UnitOfWorkFactory,
    read_sessions: async_sessionmaker[AsyncSession],
    metrics: Metrics,
    settings: Settings,
    stop: asyncio.Event,
) -> None:
    """Run `check_devices` every `status_check_seconds` until `stop` is set."""
    while not stop.is_set():
        await check_devices(
            uow_factory=uow_factory, read_sessions=read_sessions, metrics=metrics, settings=settings
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.devices.status_check_seconds)


async def refresh_active_devices(
    *,
    read_sessions: async_sessionmaker[AsyncSession],
    metrics: Metrics,
    clock: Clock,
    settings: Settings,
    stop: asyncio.Event,
    interval_seconds: float = 5.0,
) -> None:
    """Keep the `active_devices_total` gauge current until `stop` is set."""
    window = dt.timedelta(seconds=settings.active_device_window_seconds)
    while not stop.is_set():
        async with read_sessions() as session:
            count = await repository.count_seen_since(session, clock.now() - window)
        metrics.active_devices.set(count)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_seconds)


def _read(device: Device) -> DeviceRead:
    return DeviceRead(
        id=device.id,
        serial_number=device.serial_number,
        model=device.model,
        manufacturer=device.manufacturer,
        patient_id=device.patient_id,
        created_at=device.created_at,
        last_seen_at=device.last_seen_at,
        model_id=device.model_id,
        udi=device.udi,
        hardware_revision=device.hardware_revision,
        firmware_version=device.firmware_version,
        ward_id=device.ward_id,
        location=device.location,
        status=device.status,
        status_changed_at=device.status_changed_at,
        battery_percent=device.battery_percent,
        signal_strength_dbm=device.signal_strength_dbm,
        uptime_seconds=device.uptime_seconds,
        last_heartbeat_at=device.last_heartbeat_at,
        decommissioned_at=device.decommissioned_at,
    )


def _read_model(profile: DeviceModel) -> DeviceModelRead:
    return DeviceModelRead(
        id=profile.id,
        manufacturer=profile.manufacturer,
        model=profile.model,
        measurement_types=orjson.loads(profile.measurement_types),
        reporting_interval_seconds=profile.reporting_interval_seconds,
        signing_public_key=profile.signing_public_key,
        created_at=profile.created_at,
    )


def _read_alert(alert: DeviceAlert) -> DeviceAlertRead:
    return DeviceAlertRead(
        id=alert.id,
        device_id=alert.device_id,
        patient_id=alert.patient_id,
        kind=alert.kind,
        severity=alert.severity,
        message=alert.message,
        raised_at=alert.raised_at,
        resolved_at=alert.resolved_at,
    )


def _read_assignment(assignment: DeviceAssignment) -> AssignmentRead:
    return AssignmentRead(
        id=assignment.id,
        patient_id=assignment.patient_id,
        started_at=assignment.started_at,
        ended_at=assignment.ended_at,
    )


def _assignment(device_id: str, patient_id: str, now: dt.datetime) -> DeviceAssignment:
    return DeviceAssignment(
        id=str(uuid.uuid4()), device_id=device_id, patient_id=patient_id, started_at=now
    )


def _read_credential(credential: DeviceCredential) -> CredentialRead:
    return CredentialRead(
        id=credential.id,
        created_at=credential.created_at,
        expires_at=credential.expires_at,
        revoked_at=credential.revoked_at,
        last_used_at=credential.last_used_at,
    )


def _credential(device_id: str, token: str, now: dt.datetime) -> DeviceCredential:
    return DeviceCredential(
        id=str(uuid.uuid4()),
        device_id=device_id,
        token_hash=hash_device_token(token),
        created_at=now,
        expires_at=None,
        revoked_at=None,
        last_used_at=None,
    )


async def _forget(cache: Cache, credentials: Iterable[DeviceCredential]) -> None:
    for credential in credentials:
        await cache.delete(device_cache_key(credential.token_hash))
