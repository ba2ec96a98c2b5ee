"""Off the live path: missing data, predicted crossings and the anomaly model, checked
periodically; and the open-alarm gauge.

Forecasts and model scoring take tens of milliseconds per patient, so they run here, in worker
threads and within a budget of patients per pass, never in the consumer that evaluates readings
(alarm latency must not wait for them). Several workers may run the check side by side: the one
open alarm per subject and condition is enforced by the database, so they never duplicate one.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from medcloud.analytics import anomaly, repository
from medcloud.analytics import forecast as forecasting
from medcloud.analytics.alarms import AlarmState
from medcloud.analytics.changes import publish_change, rule_of, subject_of
from medcloud.analytics.events import AlertRaised, AlertResolved
from medcloud.analytics.models import CLINICAL, TECHNICAL, Alert
from medcloud.analytics.news2_scoring import NEWS2_LATEST
from medcloud.analytics.rules import Rule, RuleKind, default_rules, effective_rules
from medcloud.config import Settings
from medcloud.platform.catalogue import CATALOGUE
from medcloud.platform.clock import Clock
from medcloud.platform.directory import PatientDirectory, ReadingHistory
from medcloud.platform.metrics import Metrics
from medcloud.platform.uow import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

MONITORED_WITHIN = dt.timedelta(hours=24)
"""Missing data is raised only for patients who reported the type this recently: a patient
discharged last week is not missing data."""
PATIENTS_PER_PASS = 50
"""Forecasts and model scores per pass, at most; the next pass goes on where this one ended."""


@dataclass
class ModelCache:
    """The anomaly model in use in this process: a newly activated one replaces it only once
    it loads; one that fails keeps the previous one scoring."""

    version: str | None = None
    scorer: anomaly.Scorer | None = None
    refused: set[str] = field(default_factory=set)


@dataclass
class Advisory:
    """An advisory or technical condition found by the check, for one patient and rule."""

    organisation_id: str
    patient_id: str
    device_id: str
    ward_id: str | None
    rule: Rule
    holds: bool
    measurement: str | None = None
    value: float | None = None
    threshold: float | None = None
    at: dt.datetime | None = None
    message: str | None = None
    model_version: str | None = None


async def watch_advisories(
    *,
    uow_factory: UnitOfWorkFactory,
    read_sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    readings: ReadingHistory,
    patients: PatientDirectory,
    metrics: Metrics,
    clock: Clock,
    stop: asyncio.Event,
) -> None:
    """Check advisories and refresh the open-alarm gauge every `alerts.advisory_check_seconds`."""
    interval = settings.alerts.advisory_check_seconds
    if interval <= 0:
        await stop.wait()
        return
    cache = ModelCache()
    offset = 0
    while not stop.is_set():
        offset = await check_advisories(
            uow_factory=uow_factory,
            read_sessions=read_sessions,
            settings=settings,
            readings=readings,
            patients=patients,
            metrics=metrics,
            now=clock.now(),
            cache=cache,
            offset=offset,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def check_advisories(
    *,
    uow_factory: UnitOfWorkFactory,
    read_sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    readings: ReadingHistory,
    patients: PatientDirectory,
    metrics: Metrics,
    now: dt.datetime,
    cache: ModelCache,
    offset: int = 0,
) -> int:
    """Run one pass; return where the next pass starts among the monitored patients."""
    async with read_sessions() as session:
        for priority, count in (await repository.count_open(session)).items():
            metrics.alarms_active.labels(priority).set(count)
        latest = await repository.recent_vitals(session, since=now - MONITORED_WITHIN)
        organisations = sorted({row.organisation_id for row in latest})
        configured: dict[str, list[Rule]] = defaultdict(list)
        for rule_row in await repository.rules_of(session, organisations):
            configured[rule_row.organisation_id].append(rule_of(rule_row))
        scorer = await _current_scorer(session, cache)
    by_patient: dict[str, dict[str, tuple[dt.datetime, float, str, str]]] = defaultdict(dict)
    for row in latest:
        if row.measurement == NEWS2_LATEST:
            continue
        by_patient[row.patient_id][row.measurement] = (
            row.measured_at,
            row.value,
            row.device_id,
            row.organisation_id,
        )
    if not by_patient:
        return 0
    ids = sorted(by_patient)
    wards = await patients.wards(ids)
    defaults = default_rules(settings.alerts)
    fresh_after = now - dt.timedelta(seconds=settings.alerts.freshness_seconds)
    found: list[Advisory] = []
    costly: list[tuple[str, Rule]] = []
    for patient_id in ids:
        vitals = by_patient[patient_id]
        any_vital = next(iter(vitals.values()))
        organisation_id, device_id = any_vital[3], any_vital[2]
        rules = effective_rules(
            defaults,
            configured.get(organisation_id, ()),
            ward_id=wards.get(patient_id),
            patient_id=patient_id,
        )
        for rule in rules:
            if rule.kind == RuleKind.MISSING_DATA and rule.measurement in vitals:
                measured_at = vitals[rule.measurement][0]
                assert rule.window_seconds is not None  # noqa: S101  (validated)
                silent = (now - measured_at).total_seconds()
                found.append(
                    Advisory(
                        organisation_id,
                        patient_id,
                        device_id,
                        wards.get(patient_id),
                        rule,
                        holds=silent > rule.window_seconds,
                        measurement=rule.measurement,
                        at=measured_at,
                        message=f"no {rule.measurement} for {int(silent)} s",
                    )
                )
            elif rule.kind in (RuleKind.PREDICTED_CROSSING, RuleKind.ANOMALY):
                newest = max(v[0] for v in vitals.values())
                if newest >= fresh_after:
                    costly.append((patient_id, rule))
    if costly:
        start = offset % len(costly)
        chosen = (costly[start:] + costly[:start])[:PATIENTS_PER_PASS]
        for patient_id, rule in chosen:
            vitals = by_patient[patient_id]
            any_vital = next(iter(vitals.values()))
            advisory = await _costly(
                rule,
                patient_id=patient_id,
                organisation_id=any_vital[3],
                device_id=any_vital[2],
                ward_id=wards.get(patient_id),
                readings=readings,
                settings=settings,
                scorer=scorer,
                model_version=cache.version,
                now=now,
            )
            if advisory is not None:
                found.append(advisory)
        offset = start + len(chosen)
    if found:
        await save_advisories(uow_factory, found, now=now, metrics=metrics)
    async with uow_factory() as uow:
        await repository.forget_settled(
            uow.session, now - dt.timedelta(seconds=settings.alerts.freshness_seconds)
        )
        await uow.commit()
    return offset


async def _current_scorer(session: AsyncSession, cache: ModelCache) -> anomaly.Scorer | None:
    active = await repository.active_model(session)
    if active is None or active.version == cache.version or active.version in cache.refused:
        return cache.scorer
    try:
        scorer = anomaly.Scorer.load(
            active.onnx, features=active.features, threshold=active.threshold
        )
    except anomaly.ModelRejected as exc:
        # Registration checks a model before it is activated; this catches a row damaged since.
        cache.refused.add(active.version)
        log.error("anomaly.model.refused", version=active.version, reason=str(exc))
        return cache.scorer
    cache.version, cache.scorer = active.version, scorer
    log.info("anomaly.model.loaded", version=active.version)
    return scorer


async def _costly(
    rule: Rule,
    *,
    patient_id: str,
    organisation_id: str,
    device_id: str,
    ward_id: str | None,
    readings: ReadingHistory,
    settings: Settings,
    scorer: anomaly.Scorer | None,
    model_version: str | None,
    now: dt.datetime,
) -> Advisory | None:
    history = dt.timedelta(hours=settings.alerts.forecast_history_hours)
    base = Advisory(organisation_id, patient_id, device_id, ward_id, rule, holds=False)
    if rule.kind == RuleKind.PREDICTED_CROSSING:
        assert rule.measurement is not None and rule.window_seconds is not None  # noqa: S101
        series = await readings.series(patient_id, rule.measurement, now - history, now)
        kind = CATALOGUE[rule.measurement]
        try:
            result = await asyncio.to_thread(
                forecasting.forecast,
                [t for t, _ in series],
                [v for _, v in series],
                horizon=dt.timedelta(seconds=rule.window_seconds),
                history=history,
                minimum=kind.minimum,
                maximum=kind.maximum,
            )
        except forecasting.NotEnoughData:
            return None
        crossing = forecasting.first_crossing(result, low=rule.low, high=rule.high)
        base.measurement = rule.measurement
        if crossing is None:
            return base
        threshold = rule.low if rule.low is not None and crossing.mean < rule.low else rule.high
        base.holds, base.value, base.threshold, base.at = (
            True,
            crossing.mean,
            threshold,
            crossing.at,
        )
        base.message = (
            f"{rule.measurement} predicted to cross {threshold:g} {kind.unit} "
            f"by {crossing.at:%H:%M} UTC"
        )
        return base
    if scorer is None:
        return None
    series_by_vital = {
        vital: await readings.series(patient_id, vital, now - history, now)
        for vital in anomaly.VITALS
    }
    features = await asyncio.to_thread(_latest_window, series_by_vital)
    if features is None:
        return None
    flagged = bool(scorer.flags(features)[-1])
    score = float(scorer.scores(features)[-1])
    base.holds, base.value, base.model_version, base.at = flagged, score, model_version, now
    base.message = "the anomaly model flags the recent vital signs" if flagged else None
    return base


def _latest_window(
    series: dict[str, list[tuple[dt.datetime, float]]],
) -> np.ndarray[Any, Any] | None:
    if not any(series.values()):
        return None
    try:
        patient_baseline = anomaly.baseline(series)
    except ValueError:
        return None
    rows, _ = anomaly.featurise(series, patient_baseline)
    if len(rows) == 0:
        return None
    result: np.ndarray[Any, Any] = rows[-1:]
    return result


async def save_advisories(
    uow_factory: UnitOfWorkFactory,
    found: Sequence[Advisory],
    *,
    now: dt.datetime,
    metrics: Metrics,
) -> None:
    """Raise the advisories that hold and are not open yet; resolve open ones that ended."""
    subjects = sorted({subject_of(a.patient_id, a.device_id) for a in found})
    async with uow_factory() as uow:
        open_by_key = {
            (a.subject, a.rule): a for a in await repository.open_alarms(uow.session, subjects)
        }
        rows: list[dict[str, Any]] = []
        for advisory in found:
            subject = subject_of(advisory.patient_id, advisory.device_id)
            held = open_by_key.get((subject, advisory.rule.key))
            if advisory.holds and held is None:
                rows.append(_advisory_row(advisory, subject, now))
            elif not advisory.holds and held is not None and held.condition_active:
                _end(uow, held, advisory.rule, now)
        inserted = await repository.insert_alarms(uow.session, rows)
        for row in rows:
            if row["id"] in inserted:
                metrics.alerts_raised.labels(row["rule"]).inc()
                publish_change(uow, AlertRaised, Alert(**row), now=now)
        await uow.commit()


def _end(uow: UnitOfWork, held: Alert, rule: Rule, now: dt.datetime) -> None:
    if rule.latching and held.state == AlarmState.ACTIVE.value:
        held.condition_active, held.updated_at = False, now
        return
    held.state, held.condition_active = AlarmState.RESOLVED.value, False
    held.resolved_at = held.updated_at = now
    publish_change(uow, AlertResolved, held, now=now)


def _advisory_row(advisory: Advisory, subject: str, now: dt.datetime) -> dict[str, Any]:
    rule = advisory.rule
    return {
        "id": str(uuid.uuid4()),
        "organisation_id": advisory.organisation_id,
        "device_id": advisory.device_id,
        "patient_id": advisory.patient_id,
        "ward_id": advisory.ward_id,
        "subject": subject,
        "source": TECHNICAL if rule.kind == RuleKind.MISSING_DATA else CLINICAL,
        "state": AlarmState.ACTIVE.value,
        "measurement": advisory.measurement,
        "value": advisory.value,
        "last_value": advisory.value,
        "worst_value": advisory.value,
        "rule": rule.key,
        "rule_id": rule.id,
        "rule_version": rule.version,
        "threshold": advisory.threshold,
        "severity": rule.priority.value,
        "latching": rule.latching,
        "condition_active": True,
        "message": advisory.message,
        "model_version": advisory.model_version,
        "reading_timestamp": advisory.at,
        "last_reading_at": advisory.at,
        "received_at": None,
        "raised_at": now,
        "updated_at": now,
        "resolved_at": None,
        "silenced_until": None,
    }
