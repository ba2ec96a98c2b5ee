"""HTTP routes of the analytics context."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import TypeAdapter

from medcloud.analytics import figures, scores, service
from medcloud.analytics.rules import Priority
from medcloud.analytics.schemas import (
    AlertPage,
    AlertRead,
    AlertSource,
    FatigueRead,
    ForecastRead,
    News2History,
    News2In,
    News2Read,
    RuleIn,
    RulePage,
    RuleRead,
    ScoringIn,
    SilenceIn,
)
from medcloud.platform.errors import FieldError, Invalid
from medcloud.platform.http import Authorize, RuntimeDep, SettingsDep, UowDep
from medcloud.platform.policy import Action
from medcloud.platform.security import UserPrincipal
from medcloud.platform.types import Timestamp

router = APIRouter(tags=["analytics"])

_DURATION = TypeAdapter(dt.timedelta)


@router.get("/api/v1/alerts", response_model=AlertPage)
async def list_alerts(
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.ALERTS_READ)],
    device_id: Annotated[str | None, Query(max_length=36)] = None,
    patient_id: Annotated[str | None, Query(max_length=64)] = None,
    source: AlertSource | None = None,
    state: Literal["open", "active", "acknowledged", "resolved"] | None = None,
    priority: Priority | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> AlertPage:
    """List alarms, newest first: physiological (rules on readings), technical, or both."""
    return await service.list_alerts(
        uow=uow,
        care=runtime.care,
        principal=principal,
        device_id=device_id,
        patient_id=patient_id,
        source=source,
        state=state,
        priority=None if priority is None else priority.value,
        limit=limit,
        cursor=cursor,
    )


@router.get("/api/v1/alerts/{alert_id}", response_model=AlertRead)
async def get_alert(
    alert_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.ALERTS_READ)],
) -> AlertRead:
    """Return one alarm."""
    return await service.get_alert(
        uow=uow, care=runtime.care, principal=principal, alert_id=alert_id
    )


@router.post("/api/v1/alerts/{alert_id}/acknowledge", response_model=AlertRead)
async def acknowledge_alert(
    alert_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.ALERTS_ACKNOWLEDGE)],
) -> AlertRead:
    """Acknowledge an alarm (409 when it is acknowledged or resolved already)."""
    return await service.acknowledge_alert(
        uow=uow, care=runtime.care, principal=principal, alert_id=alert_id
    )


@router.post("/api/v1/alerts/{alert_id}/silence", response_model=AlertRead)
async def silence_alert(
    alert_id: str,
    body: SilenceIn,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.ALERTS_ACKNOWLEDGE)],
) -> AlertRead:
    """Pause this alarm's audible signal for at most the configured time."""
    return await service.silence_alert(
        uow=uow,
        care=runtime.care,
        settings=runtime.settings,
        principal=principal,
        alert_id=alert_id,
        seconds=body.seconds,
    )


@router.get("/api/v1/alarm-rules", response_model=RulePage)
async def list_rules(
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.ALARM_RULES_READ)],
    patient_id: Annotated[str | None, Query(max_length=64)] = None,
) -> RulePage:
    """List configured rules and the defaults; with `patient_id`, the rules that apply."""
    return await service.list_rules(
        uow=uow,
        settings=runtime.settings,
        patients=runtime.patients,
        care=runtime.care,
        principal=principal,
        patient_id=patient_id,
    )


@router.post("/api/v1/alarm-rules", response_model=RuleRead, status_code=201)
async def create_rule(
    body: RuleIn,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.ALARM_RULES_MANAGE)],
) -> RuleRead:
    """Configure a rule (a rule of the same key and scope is replaced, as a new version)."""
    return await service.save_rule(
        uow=uow, patients=runtime.patients, care=runtime.care, principal=principal, body=body
    )


@router.put("/api/v1/alarm-rules/{rule_id}", response_model=RuleRead)
async def update_rule(
    rule_id: str,
    body: RuleIn,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.ALARM_RULES_MANAGE)],
) -> RuleRead:
    """Change a rule; its version goes up by one."""
    return await service.save_rule(
        uow=uow,
        patients=runtime.patients,
        care=runtime.care,
        principal=principal,
        body=body,
        rule_id=rule_id,
    )


@router.delete("/api/v1/alarm-rules/{rule_id}", status_code=204)
async def delete_rule(
    rule_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.ALARM_RULES_MANAGE)],
) -> Response:
    """Remove a rule: the broader rule of its key applies again."""
    await service.delete_rule(uow=uow, care=runtime.care, principal=principal, rule_id=rule_id)
    return Response(status_code=204)


@router.post("/api/v1/analytics/news2", response_model=News2Read)
async def calculate_news2(
    body: News2In,
    principal: Annotated[UserPrincipal, Authorize(Action.SCORE_CALCULATE)],  # noqa: ARG001
) -> News2Read:
    """Score observations with NEWS2 (RCP 2017); nothing is stored."""
    return scores.calculate_news2(body)


@router.get("/api/v1/patients/{patient_id}/news2", response_model=News2History)
async def news2_history(
    patient_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.READINGS_READ)],
    hours: Annotated[float, Query(gt=0, le=24 * 31)] = 24,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> News2History:
    """List a patient's NEWS2 scores, newest first."""
    return await scores.news2_history(
        uow=uow,
        patients=runtime.patients,
        care=runtime.care,
        principal=principal,
        patient_id=patient_id,
        hours=hours,
        limit=limit,
    )


@router.put("/api/v1/patients/{patient_id}/news2-scale", status_code=204)
async def set_spo2_scale(
    patient_id: str,
    body: ScoringIn,
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.SCORING_SET)],
) -> Response:
    """Choose the SpO2 scale NEWS2 uses for this patient (clinicians only)."""
    await scores.set_spo2_scale(
        uow=uow,
        patients=runtime.patients,
        care=runtime.care,
        principal=principal,
        patient_id=patient_id,
        scale=body.spo2_scale,
    )
    return Response(status_code=204)


@router.get("/api/v1/patients/{patient_id}/forecast", response_model=ForecastRead)
async def forecast(
    patient_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    settings: SettingsDep,
    principal: Annotated[UserPrincipal, Authorize(Action.READINGS_READ)],
    type: Annotated[str, Query(max_length=40)] = "heart_rate",
    horizon: Annotated[
        str,
        Query(
            max_length=20,
            pattern=r"^P(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$",
            description="ISO 8601 duration, from PT1M to PT6H",
        ),
    ] = "PT30M",
) -> ForecastRead:
    """Forecast one vital sign with a prediction interval (`horizon` such as PT30M)."""
    return await scores.forecast_vital(
        uow=uow,
        settings=settings,
        patients=runtime.patients,
        care=runtime.care,
        readings=runtime.readings,
        principal=principal,
        patient_id=patient_id,
        measurement=type,
        horizon=_duration(horizon),
    )


def _duration(text: str) -> dt.timedelta:
    try:
        if not text.startswith("P"):
            raise ValueError(text)
        return _DURATION.validate_python(text)
    except ValueError as exc:  # pydantic's ValidationError is one too
        raise Invalid(
            "the horizon is not an ISO 8601 duration",
            errors=[FieldError("query.horizon", "an ISO 8601 duration such as PT30M")],
        ) from exc


@router.get("/api/v1/analytics/alarm-figures", response_model=FatigueRead)
async def alarm_figures(
    uow: UowDep,
    runtime: RuntimeDep,
    principal: Annotated[UserPrincipal, Authorize(Action.ALARM_FIGURES_READ)],
    start: Timestamp | None = None,
    end: Timestamp | None = None,
) -> FatigueRead:
    """Report alarm fatigue: alarms per patient-day, time to acknowledge, silenced, escalated."""
    return await figures.alarm_figures(
        uow=uow, care=runtime.care, principal=principal, start=start, end=end
    )
