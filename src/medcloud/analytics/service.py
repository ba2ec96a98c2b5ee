"""Use cases of the analytics context: evaluate readings against rules, list alerts."""

from __future__ import annotations

import uuid
from typing import Any

import structlog

from medcloud.analytics import repository
from medcloud.analytics.events import AlertRaised
from medcloud.analytics.models import Alert
from medcloud.analytics.rules import Rule, evaluate
from medcloud.analytics.schemas import AlertPage, AlertRead
from medcloud.ingest.events import ReadingsCollected
from medcloud.platform.audit import audit_record
from medcloud.platform.directory import CareDirectory
from medcloud.platform.metrics import Metrics
from medcloud.platform.paging import decode_cursor, page_of
from medcloud.platform.security import UserPrincipal
from medcloud.platform.uow import UnitOfWork

log = structlog.get_logger(__name__)


async def raise_alerts(
    *, uow: UnitOfWork, rules: tuple[Rule, ...], readings: ReadingsCollected, metrics: Metrics
) -> int:
    """Record an alert for every rule the readings breach, and publish each; return the count."""
    now = uow.clock.now()
    rows: list[dict[str, Any]] = []
    for sample in readings.samples:
        for breach in evaluate(rules, sample.measurements):
            rows.append(
                {
                    "id": str(uuid.uuid4()),
                    "organisation_id": readings.organisation_id,
                    "device_id": readings.device_id,
                    "patient_id": readings.patient_id,
                    "measurement": breach.rule.measurement,
                    "value": breach.value,
                    "rule": breach.rule.name,
                    "threshold": breach.rule.threshold,
                    "severity": breach.rule.severity,
                    "reading_timestamp": sample.timestamp,
                    "raised_at": now,
                }
            )
    inserted = await repository.insert_new(uow.session, rows)
    for row in rows:
        if row["id"] in inserted:
            uow.publish(
                AlertRaised(
                    alert_id=row["id"],
                    **{k: v for k, v in row.items() if k not in ("id", "raised_at")},
                )
            )
            metrics.alerts_raised.labels(row["rule"]).inc()
            log.info(
                "alert.raised", alert_id=row["id"], rule=row["rule"], device_id=row["device_id"]
            )
    return len(inserted)


async def list_alerts(
    *,
    uow: UnitOfWork,
    care: CareDirectory,
    principal: UserPrincipal,
    device_id: str | None,
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
            limit=limit + 1,
            after=after,
        )
        uow.publish(
            audit_record(
                principal,
                "alerts.read",
                occurred_at=uow.clock.now(),
                object_type="alert",
                detail={"count": min(len(alerts), limit), "device_id": device_id},
            )
        )
        await uow.commit()
    shown, next_cursor = page_of(alerts, limit, lambda a: (a.raised_at, a.id))
    return AlertPage(items=[_read(alert) for alert in shown], next_cursor=next_cursor)


def _read(alert: Alert) -> AlertRead:
    return AlertRead(
        id=alert.id,
        device_id=alert.device_id,
        patient_id=alert.patient_id,
        measurement=alert.measurement,
        value=alert.value,
        rule=alert.rule,
        threshold=alert.threshold,
        severity=alert.severity,
        reading_timestamp=alert.reading_timestamp,
        raised_at=alert.raised_at,
    )
