"""How an alarm's changes leave analytics: one event and one audit record per change, both
built from the alarm as it stands after it; and the names alarms are kept under."""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog

from medcloud.analytics.alarms import Change
from medcloud.analytics.events import (
    AlertAcknowledged,
    AlertChanged,
    AlertResolved,
    AlertSilenced,
    AlertUpdated,
)
from medcloud.analytics.models import AlarmRule, Alert
from medcloud.analytics.rules import Priority, Rule, RuleKind, Scope
from medcloud.platform.audit import ActorType, AuditRecorded
from medcloud.platform.uow import UnitOfWork

log = structlog.get_logger(__name__)

EVENT_OF_CHANGE: dict[Change, type[AlertChanged]] = {
    Change.UPDATED: AlertUpdated,
    Change.ACKNOWLEDGED: AlertAcknowledged,
    Change.SILENCED: AlertSilenced,
    Change.RESOLVED: AlertResolved,
}


def subject_of(patient_id: str | None, device_id: str) -> str:
    """Name whom an alarm is about: the patient, or the device when it has none."""
    return f"patient:{patient_id}" if patient_id else f"device:{device_id}"


def rule_of(row: AlarmRule) -> Rule:
    """Return a configured rule as the domain sees it."""
    return Rule(
        key=row.key,
        kind=RuleKind(row.kind),
        measurement=row.measurement,
        priority=Priority(row.priority),
        low=row.low,
        high=row.high,
        hysteresis=row.hysteresis,
        delay_seconds=row.delay_seconds,
        window_seconds=row.window_seconds,
        latching=row.latching,
        enabled=row.enabled,
        scope=Scope(row.scope),
        scope_id=row.scope_id,
        id=row.id,
        version=row.version,
    )


def alarm_snapshot(row: Alert) -> dict[str, Any]:
    """Return an alarm's columns by name, as events and rows share them."""
    return {column: getattr(row, column) for column in _SNAPSHOT_COLUMNS}


_SNAPSHOT_COLUMNS = (
    "id",
    "organisation_id",
    "source",
    "state",
    "severity",
    "device_id",
    "patient_id",
    "ward_id",
    "rule",
    "rule_id",
    "rule_version",
    "measurement",
    "value",
    "last_value",
    "worst_value",
    "threshold",
    "condition_active",
    "reading_timestamp",
    "received_at",
    "raised_at",
    "silenced_until",
    "model_version",
    "message",
)


def alarm_event(
    kind: type[AlertChanged], row: dict[str, Any], *, now: dt.datetime, actor_id: str | None = None
) -> AlertChanged:
    """Build the event of one change from the alarm as it stands."""
    return kind(
        alert_id=row["id"],
        organisation_id=row["organisation_id"],
        source=row["source"],
        state=row["state"],
        priority=row["severity"],
        device_id=row["device_id"],
        patient_id=row["patient_id"],
        ward_id=row["ward_id"],
        rule=row["rule"],
        rule_id=row["rule_id"],
        rule_version=row["rule_version"],
        measurement=row["measurement"],
        value=row["value"],
        last_value=row["last_value"],
        worst_value=row["worst_value"],
        threshold=row["threshold"],
        condition_active=row["condition_active"],
        reading_timestamp=row["reading_timestamp"],
        received_at=row["received_at"],
        raised_at=row["raised_at"],
        changed_at=now,
        actor_id=actor_id,
        silenced_until=row["silenced_until"] if "silenced_until" in row else None,
        model_version=row["model_version"],
        message=row["message"],
    )


def publish_row(
    uow: UnitOfWork,
    kind: type[AlertChanged],
    row: dict[str, Any],
    *,
    now: dt.datetime,
    actor_id: str | None = None,
) -> AlertChanged:
    """Publish (and audit) one change of an alarm given as its columns; return the event."""
    event = alarm_event(kind, row, now=now, actor_id=actor_id)
    uow.publish(event)
    uow.publish(alarm_audit(event, actor_id=actor_id))
    log.info(event.routing_key, alert_id=event.alert_id, rule=event.rule, priority=event.priority)
    return event


def alarm_audit(event: AlertChanged, *, actor_id: str | None) -> AuditRecorded:
    """Describe an alarm's change for the audit log (no values: they are clinical data)."""
    return AuditRecorded(
        organisation_id=event.organisation_id,
        occurred_at=event.changed_at,
        actor_type=ActorType.USER if actor_id else ActorType.SERVICE,
        actor_id=actor_id or "analytics",
        action=event.routing_key,
        object_type="alert",
        object_id=event.alert_id,
        patient_id=event.patient_id,
        detail={
            "rule": event.rule,
            "rule_version": event.rule_version,
            "priority": event.priority,
            "state": event.state,
        },
    )


def publish_change(
    uow: UnitOfWork,
    kind: type[AlertChanged],
    row: Alert,
    *,
    now: dt.datetime,
    actor_id: str | None = None,
) -> AlertChanged:
    """Publish (and audit) one change of a stored alarm; return the event."""
    return publish_row(uow, kind, alarm_snapshot(row), now=now, actor_id=actor_id)
