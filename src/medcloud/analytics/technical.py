"""Technical alarms in the alarm list: a device's (from the devices context's events) and a
failure to tell anyone (a notification channel that stays down, an alarm nobody was on call
for). They are never latching and resolve when their cause clears.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog

from medcloud.analytics import repository
from medcloud.analytics.alarms import AlarmState
from medcloud.analytics.changes import publish_change, subject_of
from medcloud.analytics.events import AlertRaised, AlertResolved
from medcloud.analytics.models import Alert
from medcloud.devices.events import DeviceAlertRaised, DeviceAlertResolved
from medcloud.platform.uow import UnitOfWork

log = structlog.get_logger(__name__)


async def record_technical_alert(*, uow: UnitOfWork, alert: DeviceAlertRaised) -> bool:
    """Put a device's technical alarm in its patient's alarm list; tell whether it is new.

    A device in use on nobody raises no clinical concern: its alerts stay with the devices
    context (`/device-alerts`), where technicians look.
    """
    if alert.patient_id is None:
        return False
    row = _technical_row(
        alert,
        patient_id=alert.patient_id,
        severity=alert.severity,
        message=alert.message,
        raised_at=alert.raised_at,
    )
    recorded = await repository.record_technical(uow.session, row)
    if recorded:
        publish_change(uow, AlertRaised, Alert(**row, source="technical"), now=uow.clock.now())
        log.info("alert.technical.recorded", alert_id=alert.alert_id, kind=alert.kind)
    return recorded


async def resolve_technical_alert(*, uow: UnitOfWork, resolution: DeviceAlertResolved) -> None:
    """Mark a technical alarm resolved, recording it whole if its raise has not arrived yet."""
    found = await repository.get_alarm(uow.session, resolution.alert_id, lock=True)
    if found is not None:
        _resolve(uow, found, resolution.resolved_at)
        return
    if resolution.raised_at is None or resolution.severity is None:
        # Published without the raise's details: only an alarm already recorded can be resolved.
        log.info("alert.technical.resolved", alert_id=resolution.alert_id, found=False)
        return
    if resolution.patient_id is None:
        return
    row = _technical_row(
        resolution,
        patient_id=resolution.patient_id,
        severity=resolution.severity,
        message=resolution.message,
        raised_at=resolution.raised_at,
    ) | {
        "resolved_at": resolution.resolved_at,
        "state": AlarmState.RESOLVED.value,
        "condition_active": False,
    }
    await repository.record_resolved_technical(uow.session, row)
    log.info("alert.technical.resolved", alert_id=resolution.alert_id)


def _technical_row(
    event: DeviceAlertRaised | DeviceAlertResolved,
    *,
    patient_id: str | None,
    severity: str,
    message: str | None,
    raised_at: dt.datetime,
) -> dict[str, Any]:
    return _technical(
        event.alert_id,
        event.organisation_id,
        event.device_id,
        event.kind,
        patient_id=patient_id,
        severity=severity,
        message=message,
        raised_at=raised_at,
        subject=subject_of(None, event.device_id),
    )


def _technical(
    alarm_id: str,
    organisation_id: str,
    device_id: str,
    kind: str,
    *,
    patient_id: str | None,
    severity: str,
    message: str | None,
    raised_at: dt.datetime,
    subject: str,
) -> dict[str, Any]:
    # The publishing context's alarm id is kept as ours: a redelivered or reordered event then
    # finds its row by primary key, and both lists name the alarm alike.
    return {
        "id": alarm_id,
        "organisation_id": organisation_id,
        "device_id": device_id,
        "patient_id": patient_id,
        "subject": subject,
        "state": AlarmState.ACTIVE.value,
        "rule": kind,
        "severity": severity if severity in ("high", "medium", "low") else "medium",
        "message": message,
        "raised_at": raised_at,
        "updated_at": raised_at,
        "condition_active": True,
        "latching": False,
    }


async def record_notification_alarm(
    *,
    uow: UnitOfWork,
    alarm_id: str,
    organisation_id: str,
    device_id: str,
    patient_id: str | None,
    subject: str,
    kind: str,
    message: str,
    raised_at: dt.datetime,
) -> None:
    """Raise a technical alarm for a failure to tell anyone: a channel that keeps failing (no
    patient: the organisation's admins see it) or an alarm that found nobody on call."""
    row = _technical(
        alarm_id,
        organisation_id,
        device_id,
        kind,
        patient_id=patient_id,
        severity="high",
        message=message,
        raised_at=raised_at,
        subject=subject[:80],
    )
    if await repository.record_technical(uow.session, row):
        publish_change(uow, AlertRaised, Alert(**row, source="technical"), now=uow.clock.now())
        log.warning("alert.technical.recorded", alert_id=alarm_id, kind=kind)


async def resolve_notification_alarm(
    *, uow: UnitOfWork, alarm_id: str, resolved_at: dt.datetime
) -> None:
    """End the technical alarm of a channel that delivers again."""
    found = await repository.get_alarm(uow.session, alarm_id, lock=True)
    if found is not None:
        _resolve(uow, found, resolved_at)


def _resolve(uow: UnitOfWork, alarm: Alert, resolved_at: dt.datetime) -> None:
    if alarm.state == AlarmState.RESOLVED.value:
        return
    alarm.state, alarm.condition_active = AlarmState.RESOLVED.value, False
    alarm.resolved_at = alarm.updated_at = resolved_at
    publish_change(uow, AlertResolved, alarm, now=uow.clock.now())
