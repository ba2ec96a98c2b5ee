"""Use cases of the analytics context: evaluate readings against rules, take in the devices
context's technical alerts, list alerts."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import structlog

from medcloud.analytics import repository
from medcloud.analytics.events import AlertRaised
from medcloud.analytics.models import CLINICAL, Alert
from medcloud.analytics.rules import Rule, evaluate
from medcloud.analytics.schemas import AlertPage, AlertRead, AlertSource
from medcloud.devices.events import DeviceAlertRaised, DeviceAlertResolved
from medcloud.ingest.events import ReadingsCollected
from medcloud.platform.audit import audit_record
from medcloud.platform.directory import CareDirectory
from medcloud.platform.metrics import Metrics
from medcloud.platform.paging import decode_cursor, page_of
from medcloud.platform.security import UserPrincipal
from medcloud.platform.uow import UnitOfWork

log = structlog.get_logger(__name__)


async def raise_alerts(
    *,
    uow: UnitOfWork,
    rules: tuple[Rule, ...],
    readings: Sequence[ReadingsCollected],
    metrics: Metrics,
) -> int:
    """Record an alert for every rule the readings breach, and publish each; return the count."""
    now = uow.clock.now()
    rows: list[dict[str, Any]] = []
    for batch in readings:
        rows += _breaches(rules, batch, now)
    inserted = await repository.insert_new(uow.session, rows)
    for row in rows:
        if row["id"] in inserted:
            uow.publish(
                AlertRaised(
                    alert_id=row["id"],
                    **{k: v for k, v in row.items() if k not in ("id", "source", "raised_at")},
                )
            )
            metrics.alerts_raised.labels(row["rule"]).inc()
            log.info(
                "alert.raised", alert_id=row["id"], rule=row["rule"], device_id=row["device_id"]
            )
    return len(inserted)


def _breaches(
    rules: tuple[Rule, ...], readings: ReadingsCollected, now: dt.datetime
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for sample in readings.samples:
        for breach in evaluate(rules, sample.measurements):
            rows.append(
                {
                    "id": str(uuid.uuid4()),
                    "organisation_id": readings.organisation_id,
                    "device_id": readings.device_id,
                    "patient_id": readings.patient_id,
                    "source": CLINICAL,
                    "measurement": breach.rule.measurement,
                    "value": breach.value,
                    "rule": breach.rule.name,
                    "threshold": breach.rule.threshold,
                    "severity": breach.rule.severity,
                    "reading_timestamp": sample.timestamp,
                    "raised_at": now,
                }
            )
    return rows


async def record_technical_alert(*, uow: UnitOfWork, alert: DeviceAlertRaised) -> bool:
    """Put a device's technical alert in its patient's alert list; tell whether it is new.

    A device in use on nobody raises no clinical concern: its alerts stay with the devices
    context (`/device-alerts`), where technicians look.
    """
    if alert.patient_id is None:
        return False
    recorded = await repository.record_technical(
        uow.session,
        _technical_row(
            alert,
            patient_id=alert.patient_id,
            severity=alert.severity,
            message=alert.message,
            raised_at=alert.raised_at,
        ),
    )
    if recorded:
        log.info("alert.technical.recorded", alert_id=alert.alert_id, kind=alert.kind)
    return recorded


async def resolve_technical_alert(*, uow: UnitOfWork, resolution: DeviceAlertResolved) -> None:
    """Mark a technical alert resolved, recording it whole if its raise has not arrived yet."""
    if resolution.raised_at is None or resolution.severity is None:
        # Published without the raise's details: only an alert already recorded can be resolved.
        # Were the raise still on its way, it would then be recorded open; the publisher that
        # fills these fields closes that gap.
        resolved = await repository.resolve_technical(
            uow.session, resolution.alert_id, resolution.resolved_at
        )
        log.info("alert.technical.resolved", alert_id=resolution.alert_id, found=resolved)
        return
    if resolution.patient_id is None:
        return
    await repository.record_resolved_technical(
        uow.session,
        _technical_row(
            resolution,
            patient_id=resolution.patient_id,
            severity=resolution.severity,
            message=resolution.message,
            raised_at=resolution.raised_at,
        )
        | {"resolved_at": resolution.resolved_at},
    )
    log.info("alert.technical.resolved", alert_id=resolution.alert_id)


def _technical_row(
    event: DeviceAlertRaised | DeviceAlertResolved,
    *,
    patient_id: str,
    severity: str,
    message: str | None,
    raised_at: dt.datetime,
) -> dict[str, Any]:
    # The devices context's alert id is kept as ours: a redelivered or reordered event then
    # finds its row by primary key, and both lists name the alert alike.
    return {
        "id": event.alert_id,
        "organisation_id": event.organisation_id,
        "device_id": event.device_id,
        "patient_id": patient_id,
        "rule": event.kind,
        "severity": severity,
        "message": message,
        "raised_at": raised_at,
    }


async def list_alerts(
    *,
    uow: UnitOfWork,
    care: CareDirectory,
    principal: UserPrincipal,
    device_id: str | None,
    source: AlertSource | None,
    limit: int,
    cursor: str | None,
) -> AlertPage:
    """Return alerts about the patients in the user's care scope, newest first (audited)."""
    scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
    after = decode_cursor(cursor) if cursor else None
    async with uow:
        alerts = await repository.page(
            uow.session,
            principal.organisation_id,
            patients=None if scope.whole_organisation else scope.patient_ids,
            device_id=device_id,
            source=None if source is None else source.value,
            limit=limit + 1,
            after=after,
        )
        uow.publish(
            audit_record(
                principal,
                "alerts.read",
                occurred_at=uow.clock.now(),
                object_type="alert",
                detail={
                    "count": min(len(alerts), limit),
                    "device_id": device_id,
                    "source": None if source is None else source.value,
                },
            )
        )
        await uow.commit()
    shown, next_cursor = page_of(alerts, limit, lambda a: (a.raised_at, a.id))
    return AlertPage(items=[_read(alert) for alert in shown], next_cursor=next_cursor)


def _read(alert: Alert) -> AlertRead:
    return AlertRead(
        id=alert.id,
        source=AlertSource(alert.source),
        device_id=alert.device_id,
        patient_id=alert.patient_id,
        measurement=alert.measurement,
        value=alert.value,
        rule=alert.rule,
        threshold=alert.threshold,
        severity=alert.severity,
        message=alert.message,
        reading_timestamp=alert.reading_timestamp,
        raised_at=alert.raised_at,
        resolved_at=alert.resolved_at,
    )
