"""Use cases of the analytics context: alarms (list, acknowledge, silence), the devices
context's technical alarms, rules, NEWS2, forecasts, alarm-fatigue figures and the model
registry. The live evaluation of readings is in `evaluation.py`; advisories in `advisories.py`.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson
import structlog

from medcloud.analytics import forecast as forecasting
from medcloud.analytics import news2, repository
from medcloud.analytics.alarms import Action as AlarmAction
from medcloud.analytics.alarms import AlarmState, transition
from medcloud.analytics.evaluation import publish_change, rule_of, subject_of
from medcloud.analytics.events import (
    AlertAcknowledged,
    AlertRaised,
    AlertResolved,
    AlertSilenced,
)
from medcloud.analytics.models import OPEN_STATES, AlarmRule, Alert
from medcloud.analytics.rules import Rule, RuleKind, Scope, default_rules, effective_rules
from medcloud.analytics.rules import validate as validate_rule
from medcloud.analytics.schemas import (
    AlertPage,
    AlertRead,
    AlertSource,
    FatigueRead,
    FatigueRow,
    ForecastPointRead,
    ForecastRead,
    News2History,
    News2In,
    News2Read,
    News2ScoreRead,
    RuleIn,
    RulePage,
    RuleRead,
)
from medcloud.config import Settings
from medcloud.devices.events import DeviceAlertRaised, DeviceAlertResolved
from medcloud.platform.audit import AuditRecorded, audit_record
from medcloud.platform.catalogue import CATALOGUE
from medcloud.platform.directory import (
    CareDirectory,
    PatientDirectory,
    PatientRef,
    ReadingHistory,
)
from medcloud.platform.errors import FieldError, Invalid, NotFound
from medcloud.platform.paging import decode_cursor, page_of
from medcloud.platform.policy import ensure_in_care_scope
from medcloud.platform.security import UserPrincipal
from medcloud.platform.uow import UnitOfWork

log = structlog.get_logger(__name__)


# Alarms


async def list_alerts(
    *,
    uow: UnitOfWork,
    care: CareDirectory,
    principal: UserPrincipal,
    device_id: str | None = None,
    patient_id: str | None = None,
    source: AlertSource | None = None,
    state: str | None = None,
    priority: str | None = None,
    limit: int,
    cursor: str | None,
) -> AlertPage:
    """Return alarms about the patients in the user's care scope, newest first (audited).

    `state=open` means active or acknowledged.
    """
    scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
    after = decode_cursor(cursor) if cursor else None
    states = None if state is None else (OPEN_STATES if state == "open" else (state,))
    async with uow:
        alerts = await repository.page(
            uow.session,
            principal.organisation_id,
            patients=None if scope.whole_organisation else scope.patient_ids,
            device_id=device_id,
            patient_id=patient_id,
            source=None if source is None else source.value,
            states=states,
            priority=priority,
            limit=limit + 1,
            after=after,
        )
        uow.publish(
            audit_record(
                principal,
                "alerts.read",
                occurred_at=uow.clock.now(),
                object_type="alert",
                patient_id=patient_id,
                detail={
                    "count": min(len(alerts), limit),
                    "device_id": device_id,
                    "source": None if source is None else source.value,
                },
            )
        )
        await uow.commit()
    shown, next_cursor = page_of(alerts, limit, lambda a: (a.raised_at, a.id))
    return AlertPage(
        items=[AlertRead.model_validate(alert) for alert in shown], next_cursor=next_cursor
    )


async def _alarm_in_scope(
    uow: UnitOfWork, care: CareDirectory, principal: UserPrincipal, alert_id: str
) -> Alert:
    alert = await repository.get_alarm(uow.session, alert_id, lock=True)
    if alert is None or alert.organisation_id != principal.organisation_id:
        raise NotFound("alert not found")
    scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
    ensure_in_care_scope(scope, alert.patient_id, "alert")
    return alert


async def get_alert(
    *, uow: UnitOfWork, care: CareDirectory, principal: UserPrincipal, alert_id: str
) -> AlertRead:
    """Return one alarm in the user's care scope (audited)."""
    async with uow:
        alert = await _alarm_in_scope(uow, care, principal, alert_id)
        uow.publish(
            audit_record(
                principal,
                "alert.read",
                occurred_at=uow.clock.now(),
                object_type="alert",
                object_id=alert.id,
                patient_id=alert.patient_id,
            )
        )
        await uow.commit()
    return AlertRead.model_validate(alert)


async def acknowledge_alert(
    *, uow: UnitOfWork, care: CareDirectory, principal: UserPrincipal, alert_id: str
) -> AlertRead:
    """Acknowledge an alarm: it stops escalating; a latched alarm whose condition is over
    resolves."""
    async with uow:
        alert = await _alarm_in_scope(uow, care, principal, alert_id)
        now = uow.clock.now()
        moved = transition(
            AlarmState(alert.state),
            latching=alert.latching,
            condition_active=alert.condition_active,
            action=AlarmAction.ACKNOWLEDGE,
        )
        alert.state = AlarmState.ACKNOWLEDGED.value
        alert.acknowledged_at, alert.acknowledged_by, alert.updated_at = now, principal.user_id, now
        publish_change(uow, AlertAcknowledged, alert, now=now, actor_id=principal.user_id)
        if moved.state == AlarmState.RESOLVED:
            alert.state, alert.resolved_at = AlarmState.RESOLVED.value, now
            publish_change(uow, AlertResolved, alert, now=now, actor_id=principal.user_id)
        await uow.commit()
    return AlertRead.model_validate(alert)


async def silence_alert(
    *,
    uow: UnitOfWork,
    care: CareDirectory,
    settings: Settings,
    principal: UserPrincipal,
    alert_id: str,
    seconds: float,
) -> AlertRead:
    """Pause one alarm's audible signal for a bounded time; nothing else is muted."""
    limit = settings.alerts.max_silence_seconds
    if seconds > limit:
        raise Invalid(
            "silence is limited in time",
            errors=[FieldError("seconds", f"at most {limit:g} s")],
        )
    async with uow:
        alert = await _alarm_in_scope(uow, care, principal, alert_id)
        now = uow.clock.now()
        transition(
            AlarmState(alert.state),
            latching=alert.latching,
            condition_active=alert.condition_active,
            action=AlarmAction.SILENCE,
        )
        alert.silenced_until = now + dt.timedelta(seconds=seconds)
        alert.silenced_by, alert.updated_at = principal.user_id, now
        alert.silence_count += 1
        publish_change(uow, AlertSilenced, alert, now=now, actor_id=principal.user_id)
        await uow.commit()
    return AlertRead.model_validate(alert)


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
        if found.state != AlarmState.RESOLVED.value:
            found.state, found.condition_active = AlarmState.RESOLVED.value, False
            found.resolved_at = found.updated_at = resolution.resolved_at
            publish_change(uow, AlertResolved, found, now=uow.clock.now())
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
        "subject": subject_of(None, event.device_id),
        "state": AlarmState.ACTIVE.value,
        "rule": event.kind,
        "severity": severity if severity in ("high", "medium", "low") else "medium",
        "message": message,
        "raised_at": raised_at,
        "updated_at": raised_at,
        "condition_active": True,
        "latching": False,
    }


# Rules


def _rule_read(rule: Rule) -> RuleRead:
    return RuleRead(
        id=rule.id,
        key=rule.key,
        kind=rule.kind,
        scope=rule.scope,
        scope_id=rule.scope_id,
        measurement=rule.measurement,
        priority=rule.priority,
        low=rule.low,
        high=rule.high,
        hysteresis=rule.hysteresis,
        delay_seconds=rule.delay_seconds,
        window_seconds=rule.window_seconds,
        latching=rule.latching,
        enabled=rule.enabled,
        version=rule.version,
    )


async def list_rules(
    *,
    uow: UnitOfWork,
    settings: Settings,
    patients: PatientDirectory,
    care: CareDirectory,
    principal: UserPrincipal,
    patient_id: str | None = None,
) -> RulePage:
    """Return the organisation's configured rules and the defaults; with `patient_id`, only
    the rules that apply to that patient."""
    async with uow:
        configured = [
            rule_of(r) for r in await repository.rules_of(uow.session, [principal.organisation_id])
        ]
    defaults = default_rules(settings.alerts)
    if patient_id is not None:
        patient = await _patient_in_scope(patients, care, principal, patient_id)
        applied = effective_rules(
            defaults, configured, ward_id=patient.ward_id, patient_id=patient_id
        )
        return RulePage(items=[_rule_read(r) for r in applied], defaults=[])
    return RulePage(
        items=[_rule_read(r) for r in configured], defaults=[_rule_read(r) for r in defaults]
    )


async def save_rule(
    *,
    uow: UnitOfWork,
    patients: PatientDirectory,
    principal: UserPrincipal,
    body: RuleIn,
    rule_id: str | None = None,
) -> RuleRead:
    """Create a rule, or change one (its version goes up); validated and audited."""
    candidate = Rule(
        key=body.key,
        kind=body.kind,
        measurement=body.measurement,
        priority=body.priority,
        low=body.low,
        high=body.high,
        hysteresis=body.hysteresis,
        delay_seconds=body.delay_seconds,
        window_seconds=body.window_seconds,
        latching=body.latching,
        enabled=body.enabled,
        scope=body.scope,
        scope_id=body.scope_id,
    )
    if rule_id is not None:
        # Another organisation's rule is answered as absent before anything about the body.
        async with uow:
            found = await repository.get_rule(uow.session, rule_id)
        if found is None or found.organisation_id != principal.organisation_id:
            raise NotFound("rule not found")
    errors = validate_rule(candidate)
    errors += await _scope_errors(patients, principal.organisation_id, body.scope, body.scope_id)
    if errors:
        raise Invalid("the rule cannot be saved", errors=errors)
    async with uow:
        now = uow.clock.now()
        existing = await repository.find_rule(
            uow.session, principal.organisation_id, body.scope.value, body.scope_id, body.key
        )
        if rule_id is not None:
            row = await repository.get_rule(uow.session, rule_id)
            if row is None:
                raise NotFound("rule not found")
            if existing is not None and existing.id != row.id:
                raise Invalid(
                    "another rule has this key at this scope",
                    errors=[FieldError("key", "taken at this scope")],
                )
        elif existing is not None:
            row = existing
        else:
            row = AlarmRule(
                id=str(uuid.uuid4()), organisation_id=principal.organisation_id, version=0
            )
            uow.session.add(row)
        row.scope, row.scope_id, row.key = body.scope.value, body.scope_id, body.key
        row.kind, row.measurement, row.priority = body.kind.value, body.measurement, body.priority
        row.low, row.high, row.hysteresis = body.low, body.high, float(body.hysteresis)
        row.delay_seconds, row.window_seconds = float(body.delay_seconds), body.window_seconds
        row.latching, row.enabled = body.latching, body.enabled
        row.version = (row.version or 0) + 1
        row.updated_at, row.updated_by = now, principal.user_id
        uow.publish(
            audit_record(
                principal,
                "alarm_rule.saved",
                occurred_at=now,
                object_type="alarm_rule",
                object_id=row.id,
                patient_id=body.scope_id if body.scope == Scope.PATIENT else None,
                detail={"key": body.key, "scope": body.scope.value, "version": row.version},
            )
        )
        await uow.commit()
    return _rule_read(rule_of(row))


async def _scope_errors(
    patients: PatientDirectory, organisation_id: str, scope: Scope, scope_id: str
) -> list[FieldError]:
    if scope in (Scope.ORGANISATION, Scope.DEFAULT):
        if scope == Scope.DEFAULT:
            return [FieldError("scope", "defaults come from settings; use organisation")]
        return [] if not scope_id else [FieldError("scope_id", "empty for the organisation")]
    if scope == Scope.WARD:
        if not scope_id or not await patients.has_ward(organisation_id, scope_id):
            return [FieldError("scope_id", "a ward of the organisation")]
        return []
    patient = await patients.get(scope_id) if scope_id else None
    if patient is None or patient.organisation_id != organisation_id:
        return [FieldError("scope_id", "a patient of the organisation")]
    return []


async def delete_rule(*, uow: UnitOfWork, principal: UserPrincipal, rule_id: str) -> None:
    """Remove a configured rule: the broader rule of its key applies again (audited)."""
    async with uow:
        row = await repository.get_rule(uow.session, rule_id)
        if row is None or row.organisation_id != principal.organisation_id:
            raise NotFound("rule not found")
        await uow.session.delete(row)
        uow.publish(
            audit_record(
                principal,
                "alarm_rule.deleted",
                occurred_at=uow.clock.now(),
                object_type="alarm_rule",
                object_id=row.id,
                detail={"key": row.key, "scope": row.scope, "version": row.version},
            )
        )
        await uow.commit()


# NEWS2


def calculate_news2(body: News2In) -> News2Read:
    """Score observations with NEWS2 (stateless: nothing is stored or audited)."""
    result = news2.score(
        news2.Vitals(
            respiratory_rate=body.respiratory_rate,
            spo2=body.spo2,
            spo2_scale=body.spo2_scale,
            supplemental_oxygen=body.supplemental_oxygen,
            systolic_bp=body.systolic_bp,
            pulse=body.pulse,
            consciousness=body.consciousness,
            temperature=body.temperature,
        )
    )
    return News2Read(score=result.score, risk=result.risk, components=result.components)


async def _patient_in_scope(
    patients: PatientDirectory, care: CareDirectory, principal: UserPrincipal, patient_id: str
) -> PatientRef:
    patient = await patients.get(patient_id)
    if patient is None or patient.organisation_id != principal.organisation_id:
        raise NotFound("patient not found")
    scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
    ensure_in_care_scope(scope, patient_id, "patient")
    return patient


def _patient_audit(
    principal: UserPrincipal,
    action: str,
    *,
    occurred_at: dt.datetime,
    patient_id: str,
    detail: dict[str, Any],
) -> AuditRecorded:
    return audit_record(
        principal,
        action,
        occurred_at=occurred_at,
        object_type="patient",
        object_id=patient_id,
        patient_id=patient_id,
        detail=detail,
    )


async def news2_history(
    *,
    uow: UnitOfWork,
    patients: PatientDirectory,
    care: CareDirectory,
    principal: UserPrincipal,
    patient_id: str,
    hours: float,
    limit: int,
) -> News2History:
    """Return a patient's NEWS2 scores, newest first (audited)."""
    await _patient_in_scope(patients, care, principal, patient_id)
    async with uow:
        now = uow.clock.now()
        rows = await repository.scores(
            uow.session, patient_id, now - dt.timedelta(hours=hours), now + dt.timedelta(1), limit
        )
        scale = (await repository.spo2_scales(uow.session, [patient_id])).get(patient_id, 1)
        uow.publish(
            _patient_audit(
                principal,
                "news2.read",
                occurred_at=now,
                patient_id=patient_id,
                detail={"count": len(rows)},
            )
        )
        await uow.commit()
    return News2History(
        patient_id=patient_id,
        spo2_scale=scale,
        items=[
            News2ScoreRead(
                score=row.score,
                risk=news2.Risk(row.risk),
                components=orjson.loads(row.components),
                scored_at=row.scored_at,
                spo2_scale=row.spo2_scale,
                live=row.live,
            )
            for row in rows
        ],
    )


async def set_spo2_scale(
    *,
    uow: UnitOfWork,
    patients: PatientDirectory,
    care: CareDirectory,
    principal: UserPrincipal,
    patient_id: str,
    scale: int,
) -> None:
    """Choose the SpO2 scale NEWS2 scores a patient on (a clinician's decision, audited)."""
    await _patient_in_scope(patients, care, principal, patient_id)
    async with uow:
        now = uow.clock.now()
        await repository.save_scoring(
            uow.session,
            {
                "patient_id": patient_id,
                "organisation_id": principal.organisation_id,
                "spo2_scale": scale,
                "updated_at": now,
                "updated_by": principal.user_id,
            },
        )
        uow.publish(
            _patient_audit(
                principal,
                "news2.scale.set",
                occurred_at=now,
                patient_id=patient_id,
                detail={"spo2_scale": scale},
            )
        )
        await uow.commit()


# Forecasts


async def forecast_vital(
    *,
    uow: UnitOfWork,
    settings: Settings,
    patients: PatientDirectory,
    care: CareDirectory,
    readings: ReadingHistory,
    principal: UserPrincipal,
    patient_id: str,
    measurement: str,
    horizon: dt.timedelta,
) -> ForecastRead:
    """Forecast one of a patient's vitals over `horizon`, with a prediction interval (audited)."""
    kind = CATALOGUE.get(measurement)
    if kind is None:
        raise Invalid(
            "unknown measurement type",
            errors=[FieldError("query.type", f"one of {', '.join(sorted(CATALOGUE))}")],
        )
    if not dt.timedelta(minutes=1) <= horizon <= dt.timedelta(hours=6):
        raise Invalid(
            "the horizon is out of range",
            errors=[FieldError("query.horizon", "from PT1M to PT6H")],
        )
    patient = await _patient_in_scope(patients, care, principal, patient_id)
    now = uow.clock.now()
    history = dt.timedelta(hours=settings.alerts.forecast_history_hours)
    series = await readings.series(patient_id, measurement, now - history, now + dt.timedelta(1))
    try:
        result = forecasting.forecast(
            [t for t, _ in series],
            [v for _, v in series],
            horizon=horizon,
            history=history,
            minimum=kind.minimum,
            maximum=kind.maximum,
        )
    except forecasting.NotEnoughData as exc:
        raise Invalid(str(exc), errors=[FieldError("query.type", str(exc))]) from exc
    async with uow:
        configured = [
            rule_of(r) for r in await repository.rules_of(uow.session, [principal.organisation_id])
        ]
        uow.publish(
            _patient_audit(
                principal,
                "forecast.read",
                occurred_at=now,
                patient_id=patient_id,
                detail={"type": measurement},
            )
        )
        await uow.commit()
    rules = effective_rules(
        default_rules(settings.alerts),
        configured,
        ward_id=patient.ward_id,
        patient_id=patient_id,
    )
    limits = [r for r in rules if r.kind == RuleKind.THRESHOLD and r.measurement == measurement]
    crossing = None
    if limits:
        found = forecasting.first_crossing(result, low=limits[0].low, high=limits[0].high)
        crossing = (
            None if found is None else ForecastPointRead.model_validate(found, from_attributes=True)
        )
    return ForecastRead(
        patient_id=patient_id,
        type=measurement,
        unit=kind.unit,
        method=result.method,
        level=result.level,
        step_seconds=result.step.total_seconds(),
        history_points=len(series),
        points=[ForecastPointRead.model_validate(p, from_attributes=True) for p in result.points],
        crossing=crossing,
    )


# Alarm fatigue


def _percentile(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def _figures(
    ward_id: str | None, rule: str, alerts: Sequence[Alert], patient_days: float
) -> FatigueRow:
    waits = [
        (a.acknowledged_at - a.raised_at).total_seconds()
        for a in alerts
        if a.acknowledged_at is not None
    ]
    count = len(alerts)
    return FatigueRow(
        ward_id=ward_id,
        rule=rule,
        alarms=count,
        patient_days=round(patient_days, 3),
        alarms_per_patient_day=round(count / patient_days, 3) if patient_days else 0.0,
        acknowledged=len(waits),
        time_to_acknowledge_p50_seconds=_percentile(waits, 0.5),
        time_to_acknowledge_p90_seconds=_percentile(waits, 0.9),
        silenced_share=round(sum(1 for a in alerts if a.silence_count) / count, 4)
        if count
        else 0.0,
        escalated_share=(
            round(sum(1 for a in alerts if a.escalation_count) / count, 4) if count else 0.0
        ),
    )


async def alarm_figures(
    *,
    uow: UnitOfWork,
    care: CareDirectory,
    principal: UserPrincipal,
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> FatigueRead:
    """Return alarms per patient-day, time to acknowledge and the shares silenced and escalated,
    per ward and rule, over [start, end) (default: the last 7 days)."""
    scope = await care.scope(principal.user_id, principal.organisation_id, principal.role.value)
    async with uow:
        now = uow.clock.now()
        end = end or now
        start = start or end - dt.timedelta(days=7)
        if start >= end:
            raise Invalid("empty period", errors=[FieldError("query.start", "before end")])
        alerts = await repository.alarms_between(
            uow.session,
            principal.organisation_id,
            start,
            end,
            None if scope.whole_organisation else scope.patient_ids,
        )
        uow.publish(
            audit_record(
                principal,
                "alarm_figures.read",
                occurred_at=now,
                object_type="alert",
                detail={"count": len(alerts)},
            )
        )
        await uow.commit()
    days = (end - start).total_seconds() / 86_400
    # A patient-day counts each patient who had any alarm in the period for the whole period:
    # the platform knows of no admissions, so this is the conservative denominator.
    patients_by_ward: dict[str | None, set[str]] = defaultdict(set)
    groups: dict[tuple[str | None, str], list[Alert]] = defaultdict(list)
    for alert in alerts:
        groups[(alert.ward_id, alert.rule)].append(alert)
        patients_by_ward[alert.ward_id].add(alert.patient_id or alert.device_id)
    every_patient = set().union(*patients_by_ward.values()) if patients_by_ward else set()
    rows = [
        _figures(ward, rule, group, len(patients_by_ward[ward]) * days)
        for (ward, rule), group in sorted(groups.items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))
    ]
    return FatigueRead(
        start=start,
        end=end,
        total=_figures(None, "*", alerts, len(every_patient) * days),
        rows=rows,
    )
