"""Alarm-fatigue figures: how many alarms, how fast acknowledged, how often silenced and
escalated, per ward and rule."""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Sequence

from medcloud.analytics import repository
from medcloud.analytics.models import Alert
from medcloud.analytics.schemas import FatigueRead, FatigueRow
from medcloud.platform.audit import audit_record
from medcloud.platform.directory import CareDirectory
from medcloud.platform.errors import FieldError, Invalid
from medcloud.platform.security import UserPrincipal
from medcloud.platform.uow import UnitOfWork


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
