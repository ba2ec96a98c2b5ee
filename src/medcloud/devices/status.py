"""Use cases of device status and liveness: heartbeats and other signs of life, online and
offline, the technical alerts (offline while in use, low battery), and the background monitor."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections.abc import Mapping

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.config import Settings
from medcloud.devices import repository, rollout_repository, rollouts, updates
from medcloud.devices.events import DeviceAlertRaised, DeviceAlertResolved, DeviceStatusChanged
from medcloud.devices.models import Device, DeviceAlert
from medcloud.devices.schemas import DeviceAlertPage, DeviceAlertRead, DeviceStatusRead, HeartbeatIn
from medcloud.devices.visibility import visible_patients
from medcloud.platform.clock import Clock
from medcloud.platform.directory import CareDirectory
from medcloud.platform.errors import NotFound
from medcloud.platform.metrics import Metrics
from medcloud.platform.paging import decode_cursor, page_of
from medcloud.platform.policy import authorize_device_write
from medcloud.platform.security import Principal, UserPrincipal
from medcloud.platform.uow import UnitOfWork, UnitOfWorkFactory

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
                await resolve_alert(uow, device, LOW_BATTERY, now)
        if beat.firmware_version is not None:
            device.firmware_version = beat.firmware_version
            await updates.reconcile_version(uow, device, beat.firmware_version, now)
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
    returning = await repository.not_online(uow.session, seen)
    if not returning:
        return
    # A ward's monitors come back together after an outage: one query for all their alerts.
    alerts = await repository.open_alerts(uow.session, [d.id for d in returning], OFFLINE)
    for device in returning:
        set_status(uow, device, "online", now)
        _resolve(uow, device, alerts.get(device.id), now)


async def _come_online(uow: UnitOfWork, device: Device, now: dt.datetime) -> None:
    if device.status in ("unknown", "offline"):
        set_status(uow, device, "online", now)
        await resolve_alert(uow, device, OFFLINE, now)


def set_status(uow: UnitOfWork, device: Device, status: str, now: dt.datetime) -> None:
    """Give the device this status and announce the change, if it is one."""
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


async def resolve_alert(uow: UnitOfWork, device: Device, kind: str, now: dt.datetime) -> None:
    """Resolve the device's open alert of this kind, if there is one."""
    _resolve(uow, device, await repository.open_alert(uow.session, device.id, kind), now)


def _resolve(uow: UnitOfWork, device: Device, alert: DeviceAlert | None, now: dt.datetime) -> None:
    if alert is None:
        return
    alert.resolved_at = now
    uow.publish(
        DeviceAlertResolved(
            organisation_id=device.organisation_id,
            alert_id=alert.id,
            device_id=device.id,
            kind=alert.kind,
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
        patients=await visible_patients(care, principal),
        device_id=device_id,
        open_only=open_only,
        limit=limit + 1,
        after=after,
    )
    shown, next_cursor = page_of(alerts, limit, lambda a: (a.raised_at, a.id))
    return DeviceAlertPage(
        items=[DeviceAlertRead.model_validate(alert) for alert in shown], next_cursor=next_cursor
    )


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
            set_status(uow, device, "offline", now)
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
        in_flight = await rollout_repository.count_in_flight(session)
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
    await updates.time_out_updates(uow=uow_factory(), settings=settings)
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
