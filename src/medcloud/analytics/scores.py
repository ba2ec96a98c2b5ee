"""Use cases about one patient's scores: NEWS2 (the stateless calculator, the stored history,
the SpO2 scale) and forecasts of a vital sign."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from medcloud.analytics import forecast as forecasting
from medcloud.analytics import news2, repository
from medcloud.analytics.changes import rule_of
from medcloud.analytics.rules import RuleKind, default_rules, effective_rules
from medcloud.analytics.schemas import (
    ForecastPointRead,
    ForecastRead,
    News2History,
    News2In,
    News2Read,
    News2ScoreRead,
)
from medcloud.config import Settings
from medcloud.platform.audit import AuditRecorded, audit_record
from medcloud.platform.catalogue import CATALOGUE
from medcloud.platform.directory import CareDirectory, PatientDirectory, PatientRef, ReadingHistory
from medcloud.platform.errors import FieldError, Invalid, NotFound
from medcloud.platform.policy import ensure_in_care_scope
from medcloud.platform.security import UserPrincipal
from medcloud.platform.uow import UnitOfWork


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


async def patient_in_scope(
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
    await patient_in_scope(patients, care, principal, patient_id)
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
    await patient_in_scope(patients, care, principal, patient_id)
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
    patient = await patient_in_scope(patients, care, principal, patient_id)
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
