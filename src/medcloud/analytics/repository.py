"""Queries on the analytics context's tables. Repositories never commit."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from medcloud.analytics.models import (
    OPEN_STATES,
    TECHNICAL,
    AlarmCondition,
    AlarmRule,
    Alert,
    AnomalyModel,
    News2Score,
    PatientScoring,
    VitalLatest,
)
from medcloud.platform.db import upsert
from medcloud.platform.paging import before

# Alarms


async def open_alarms(session: AsyncSession, subjects: Sequence[str]) -> Sequence[Alert]:
    """Return the open alarms of these subjects."""
    if not subjects:
        return []
    query = select(Alert).where(Alert.subject.in_(list(subjects)), Alert.state.in_(OPEN_STATES))
    return (await session.scalars(query)).all()


async def insert_alarms(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert new alarms; return the ids inserted (an open one of the same subject and
    condition, inserted by a concurrent evaluation, keeps its place)."""
    if not rows:
        return set()
    statement = upsert(session)(Alert).on_conflict_do_nothing().returning(Alert.id)
    result = await session.execute(statement, list(rows))
    return set(result.scalars().all())


async def update_alarm(session: AsyncSession, alarm_id: str, values: dict[str, Any]) -> None:
    """Change an alarm's columns."""
    await session.execute(update(Alert).where(Alert.id == alarm_id).values(**values))


async def get_alarm(session: AsyncSession, alarm_id: str, *, lock: bool = False) -> Alert | None:
    """Return one alarm (locked for the transaction with `lock`, on PostgreSQL)."""
    query = select(Alert).where(Alert.id == alarm_id)
    if lock:
        query = query.with_for_update()
    return (await session.scalars(query)).one_or_none()


async def conditions(session: AsyncSession, subjects: Sequence[str]) -> Sequence[AlarmCondition]:
    """Return the pending conditions of these subjects."""
    if not subjects:
        return []
    query = select(AlarmCondition).where(AlarmCondition.subject.in_(list(subjects)))
    return (await session.scalars(query)).all()


async def save_conditions(
    session: AsyncSession,
    kept: Sequence[dict[str, Any]],
    dropped: Sequence[tuple[str, str]],
) -> None:
    """Write the conditions still pending and forget those that ended."""
    if dropped:
        await session.execute(
            delete(AlarmCondition).where(
                tuple_(AlarmCondition.subject, AlarmCondition.rule).in_(list(dropped))
            )
        )
    if kept:
        statement = upsert(session)(AlarmCondition)
        statement = statement.on_conflict_do_update(
            index_elements=["subject", "rule"],
            set_={
                "onset_at": statement.excluded.onset_at,
                "reference_value": statement.excluded.reference_value,
                "reference_at": statement.excluded.reference_at,
                "evaluated_to": statement.excluded.evaluated_to,
            },
        )
        await session.execute(statement, list(kept))


async def forget_settled(session: AsyncSession, before: dt.datetime) -> None:
    """Drop conditions that only remember an alarm ended before `before`: readings older than
    that are past the freshness window and page no one anyway."""
    await session.execute(
        delete(AlarmCondition).where(
            AlarmCondition.onset_at.is_(None),
            AlarmCondition.reference_at.is_(None),
            AlarmCondition.evaluated_to < before,
        )
    )


async def record_technical(session: AsyncSession, row: dict[str, Any]) -> bool:
    """Insert a technical alarm unless its id (or an open one of its kind) is known; tell
    whether it was inserted."""
    statement = (
        upsert(session)(Alert)
        .values(**row, source=TECHNICAL)
        .on_conflict_do_nothing()
        .returning(Alert.id)
    )
    return (await session.execute(statement)).scalar() is not None


async def record_resolved_technical(session: AsyncSession, row: dict[str, Any]) -> None:
    """Insert a technical alarm already resolved, or resolve the recorded one."""
    statement = upsert(session)(Alert).values(**row, source=TECHNICAL)
    # Inserting (rather than update-else-insert) makes a concurrent raise of the same alarm
    # wait for this one on the primary key, whichever of the two arrives first.
    statement = statement.on_conflict_do_update(
        index_elements=["id"],
        set_={
            "resolved_at": statement.excluded.resolved_at,
            "state": "resolved",
            "condition_active": False,
            "updated_at": statement.excluded.resolved_at,
        },
        where=Alert.resolved_at.is_(None),
    )
    await session.execute(statement)


async def page(
    session: AsyncSession,
    organisation_id: str,
    *,
    patients: frozenset[str] | None,
    device_id: str | None,
    patient_id: str | None,
    source: str | None,
    states: Sequence[str] | None,
    priority: str | None,
    limit: int,
    after: tuple[dt.datetime, str] | None,
) -> Sequence[Alert]:
    """Return an organisation's alarms, newest first, after a (raised_at, id) cursor."""
    query = select(Alert).where(Alert.organisation_id == organisation_id)
    if patients is not None:
        query = query.where(Alert.patient_id.in_(patients))
    if device_id is not None:
        query = query.where(Alert.device_id == device_id)
    if patient_id is not None:
        query = query.where(Alert.patient_id == patient_id)
    if source is not None:
        query = query.where(Alert.source == source)
    if states is not None:
        query = query.where(Alert.state.in_(list(states)))
    if priority is not None:
        query = query.where(Alert.severity == priority)
    if after is not None:
        query = query.where(before(Alert.raised_at, Alert.id, after))
    query = query.order_by(Alert.raised_at.desc(), Alert.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def alarms_between(
    session: AsyncSession,
    organisation_id: str,
    start: dt.datetime,
    end: dt.datetime,
    patients: frozenset[str] | None,
) -> Sequence[Alert]:
    """Return the alarms raised in [start, end)."""
    query = select(Alert).where(
        Alert.organisation_id == organisation_id, Alert.raised_at >= start, Alert.raised_at < end
    )
    if patients is not None:
        query = query.where(Alert.patient_id.in_(patients))
    return (await session.scalars(query)).all()


async def count_open(session: AsyncSession) -> dict[str, int]:
    """Count open alarms by priority."""
    rows = await session.execute(
        select(Alert.severity, func.count())
        .where(Alert.state.in_(OPEN_STATES))
        .group_by(Alert.severity)
    )
    return dict(rows.all())


# Rules


async def rules_of(session: AsyncSession, organisation_ids: Sequence[str]) -> Sequence[AlarmRule]:
    """Return the configured rules of these organisations."""
    if not organisation_ids:
        return []
    query = select(AlarmRule).where(AlarmRule.organisation_id.in_(list(organisation_ids)))
    return (await session.scalars(query.order_by(AlarmRule.key, AlarmRule.scope))).all()


async def get_rule(session: AsyncSession, rule_id: str) -> AlarmRule | None:
    """Return one configured rule."""
    return await session.get(AlarmRule, rule_id)


async def find_rule(
    session: AsyncSession, organisation_id: str, scope: str, scope_id: str, key: str
) -> AlarmRule | None:
    """Return the rule of this key at this scope, if configured."""
    query = select(AlarmRule).where(
        AlarmRule.organisation_id == organisation_id,
        AlarmRule.scope == scope,
        AlarmRule.scope_id == scope_id,
        AlarmRule.key == key,
    )
    return (await session.scalars(query)).one_or_none()


# Vitals and NEWS2


async def latest_vitals(session: AsyncSession, patient_ids: Sequence[str]) -> Sequence[VitalLatest]:
    """Return the newest live value of every type for these patients."""
    if not patient_ids:
        return []
    query = select(VitalLatest).where(VitalLatest.patient_id.in_(list(patient_ids)))
    return (await session.scalars(query)).all()


async def save_vitals(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Keep each row as its patient's newest value of its type, unless a newer one is kept."""
    if not rows:
        return
    statement = upsert(session)(VitalLatest)
    statement = statement.on_conflict_do_update(
        index_elements=["patient_id", "measurement"],
        set_={
            "value": statement.excluded.value,
            "measured_at": statement.excluded.measured_at,
            "device_id": statement.excluded.device_id,
        },
        where=VitalLatest.measured_at < statement.excluded.measured_at,
    )
    await session.execute(statement, list(rows))


async def recent_vitals(session: AsyncSession, *, since: dt.datetime) -> Sequence[VitalLatest]:
    """Return every patient's newest values measured after `since`."""
    query = select(VitalLatest).where(VitalLatest.measured_at > since)
    return (await session.scalars(query)).all()


async def spo2_scales(session: AsyncSession, patient_ids: Sequence[str]) -> dict[str, int]:
    """Return the SpO2 scale chosen for each of these patients (absent: scale 1)."""
    if not patient_ids:
        return {}
    rows = await session.execute(
        select(PatientScoring.patient_id, PatientScoring.spo2_scale).where(
            PatientScoring.patient_id.in_(list(patient_ids))
        )
    )
    return dict(rows.all())


async def save_scoring(session: AsyncSession, row: dict[str, Any]) -> None:
    """Record a patient's SpO2 scale."""
    statement = upsert(session)(PatientScoring).values(**row)
    statement = statement.on_conflict_do_update(
        index_elements=["patient_id"],
        set_={k: statement.excluded[k] for k in ("spo2_scale", "updated_at", "updated_by")},
    )
    await session.execute(statement)


async def insert_scores(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Store NEWS2 scores; a score already stored for the same instant is kept."""
    if rows:
        statement = upsert(session)(News2Score).on_conflict_do_nothing()
        await session.execute(statement, list(rows))


async def scores(
    session: AsyncSession, patient_id: str, start: dt.datetime, end: dt.datetime, limit: int
) -> Sequence[News2Score]:
    """Return a patient's NEWS2 scores in [start, end), newest first."""
    query = (
        select(News2Score)
        .where(
            News2Score.patient_id == patient_id,
            News2Score.scored_at >= start,
            News2Score.scored_at < end,
        )
        .order_by(News2Score.scored_at.desc())
        .limit(limit)
    )
    return (await session.scalars(query)).all()


# The anomaly model registry


async def active_model(session: AsyncSession) -> AnomalyModel | None:
    """Return the model that scores now, if any."""
    query = select(AnomalyModel).where(AnomalyModel.active.is_(True))
    return (await session.scalars(query.order_by(AnomalyModel.created_at.desc()))).first()


async def models(session: AsyncSession) -> Sequence[AnomalyModel]:
    """Return every registered model, newest first."""
    query = select(AnomalyModel).order_by(AnomalyModel.created_at.desc())
    return (await session.scalars(query)).all()


async def activate_model(session: AsyncSession, version: str) -> None:
    """Make `version` the one model that scores."""
    await session.execute(
        update(AnomalyModel).where(AnomalyModel.version != version).values(active=False)
    )
    await session.execute(
        update(AnomalyModel).where(AnomalyModel.version == version).values(active=True)
    )
