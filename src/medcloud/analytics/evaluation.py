"""The live path: evaluate alarm rules and NEWS2 on each batch of newly stored readings.

It runs inside the consumer's transaction (which also records the batch as processed), with a
fixed number of statements per batch whatever its size: rules, open alarms, pending conditions
and latest vitals are read once for every subject in the batch, and written back once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import structlog

from medcloud.analytics import news2, repository
from medcloud.analytics.alarms import (
    AlarmState,
    Track,
    clear,
    news2_priority,
    step_level,
    step_rate,
    step_threshold,
)
from medcloud.analytics.changes import (
    EVENT_OF_CHANGE,
    publish_change,
    publish_row,
    rule_of,
    subject_of,
)
from medcloud.analytics.events import AlertRaised
from medcloud.analytics.models import CLINICAL, TECHNICAL, Alert
from medcloud.analytics.news2_scoring import (
    NEWS2_INPUTS,
    NEWS2_LATEST,
    NEWS2_STORE_EVERY_SECONDS,
    news2_inputs,
    score_history,
)
from medcloud.analytics.rules import Priority, Rule, RuleKind, Scope, default_rules, effective_rules
from medcloud.config import Settings
from medcloud.ingest.events import ReadingsCollected
from medcloud.platform.directory import PatientDirectory
from medcloud.platform.metrics import Metrics
from medcloud.platform.uow import UnitOfWork

log = structlog.get_logger(__name__)


@dataclass
class Subject:
    """The live readings of one patient (or patient-less device) in this batch."""

    key: str
    organisation_id: str
    device_id: str
    patient_id: str | None
    received_at: dt.datetime
    samples: list[tuple[dt.datetime, dict[str, float]]] = field(default_factory=list)


@dataclass
class Tracked:
    """A track with what is needed to save it."""

    subject: Subject
    rule: Rule
    track: Track
    row: Alert | None
    measurement: str | None


async def evaluate_readings(
    *,
    uow: UnitOfWork,
    settings: Settings,
    patients: PatientDirectory,
    metrics: Metrics,
    batches: Sequence[ReadingsCollected],
) -> int:
    """Evaluate the rules on live readings; return how many alarms were raised.

    Readings measured before the freshness window are stored history: they page no one.
    """
    now = uow.clock.now()
    fresh_after = now - dt.timedelta(seconds=settings.alerts.freshness_seconds)
    await score_history(uow, settings, batches, fresh_after)
    subjects = _live_subjects(batches, fresh_after)
    if not subjects:
        return 0
    session = uow.session
    organisations = sorted({s.organisation_id for s in subjects.values()})
    configured: dict[str, list[Rule]] = defaultdict(list)
    for row in await repository.rules_of(session, organisations):
        configured[row.organisation_id].append(rule_of(row))
    patient_ids = sorted({s.patient_id for s in subjects.values() if s.patient_id})
    by_ward = any(r.scope == Scope.WARD for rules in configured.values() for r in rules)
    # A ward is looked up for every patient only when some organisation configured ward rules;
    # otherwise only for the few patients an alarm is raised for.
    wards = await patients.wards(patient_ids) if by_ward else {}
    keys = sorted(subjects)
    open_by_key = {(a.subject, a.rule): a for a in await repository.open_alarms(session, keys)}
    pending = {(c.subject, c.rule): c for c in await repository.conditions(session, keys)}
    defaults = default_rules(settings.alerts)

    tracked: list[Tracked] = []

    def track_for(
        subject: Subject,
        rule: Rule,
        condition: str,
        measurement: str | None,
        *,
        after: Track | None = None,
    ) -> Track:
        """Start following a condition: from its stored state, or anew `after` an alarm of it
        ended within this batch (so a second episode in one batch is an alarm of its own)."""
        track = Track(condition)
        row = None
        if after is not None:
            track.reference = after.reference
            track.settled_at, track.dirty = after.horizon, True
        else:
            row = open_by_key.get((subject.key, condition))
            held = pending.get((subject.key, condition))
            if row is not None:
                track.alarm_state = AlarmState(row.state)
                track.latching = row.latching
                track.condition_active = row.condition_active
                track.priority = Priority(row.severity)
                track.worst = row.worst_value
                track.horizon = row.last_reading_at
            if held is not None:
                track.onset_at = held.onset_at
                if held.reference_at is not None and held.reference_value is not None:
                    track.reference = (held.reference_at, held.reference_value)
                track.settled_at = held.evaluated_to
        tracked.append(Tracked(subject, rule, track, row, measurement))
        return track

    rules_of_subject: dict[str, tuple[Rule, ...]] = {}
    for subject in subjects.values():
        rules = effective_rules(
            defaults,
            configured.get(subject.organisation_id, ()),
            ward_id=wards.get(subject.patient_id or ""),
            patient_id=subject.patient_id,
        )
        rules_of_subject[subject.key] = rules
        subject.samples.sort(key=lambda sample: sample[0])
        for rule in rules:
            _evaluate_rule(subject, rule, track_for)

    await _score_news2(
        uow=uow,
        settings=settings,
        subjects=[s for s in subjects.values() if s.patient_id],
        rules_of_subject=rules_of_subject,
        track_for=track_for,
        now=now,
    )
    raised = await _save(uow, tracked, wards=wards, patients=patients, now=now, metrics=metrics)
    return raised


def _live_subjects(
    batches: Sequence[ReadingsCollected], fresh_after: dt.datetime
) -> dict[str, Subject]:
    subjects: dict[str, Subject] = {}
    for batch in batches:
        live = [(s.timestamp, s.measurements) for s in batch.samples if s.timestamp >= fresh_after]
        if not live:
            continue
        key = subject_of(batch.patient_id, batch.device_id)
        subject = subjects.get(key)
        if subject is None:
            subject = subjects[key] = Subject(
                key, batch.organisation_id, batch.device_id, batch.patient_id, batch.received_at
            )
        subject.received_at = min(subject.received_at, batch.received_at)
        subject.samples += live
    return subjects


def _evaluate_rule(subject: Subject, rule: Rule, track_for: Any) -> None:
    measurement = rule.measurement
    if rule.kind in (RuleKind.THRESHOLD, RuleKind.RATE_OF_CHANGE) and measurement is not None:
        values = [(t, m[measurement]) for t, m in subject.samples if measurement in m]
        if not values:
            return
        step = step_threshold if rule.kind == RuleKind.THRESHOLD else step_rate
        for condition in rule.conditions():
            side = condition.rsplit("_", 1)[1]
            track: Track = track_for(subject, rule, condition, measurement)
            for at, value in values:
                # Readings can arrive out of order (two relays, a device flushing a buffer). One
                # older than the open alarm's newest must not change it (a stale normal value
                # would end a newer alarm); one from an episode that already had its alarm must
                # not raise another. Any other may raise: an episode is never lost to reordering.
                if track.is_open:
                    if track.horizon is not None and at <= track.horizon:
                        continue
                elif track.settled_at is not None and at <= track.settled_at:
                    continue
                step(rule, side, track, at, value)
                if track.horizon is None or at > track.horizon:
                    track.horizon = at
                if track.alarm_state == AlarmState.RESOLVED:
                    track = track_for(subject, rule, condition, measurement, after=track)
    elif rule.kind == RuleKind.MISSING_DATA and measurement is not None:
        # Data came back: a missing-data alarm of this type is over.
        values = [(t, m[measurement]) for t, m in subject.samples if measurement in m]
        if values:
            track = track_for(subject, rule, rule.key, measurement)
            clear(track, *values[-1])


async def _score_news2(
    *,
    uow: UnitOfWork,
    settings: Settings,
    subjects: Sequence[Subject],
    rules_of_subject: dict[str, tuple[Rule, ...]],
    track_for: Any,
    now: dt.datetime,
) -> None:
    session = uow.session
    newest: dict[str, dict[str, tuple[dt.datetime, float, str]]] = {}
    for subject in subjects:
        assert subject.patient_id is not None  # noqa: S101  (only patients are scored)
        mine = newest.setdefault(subject.patient_id, {})
        for at, measurements in subject.samples:
            for code, value in measurements.items():
                held = mine.get(code)
                if held is None or held[0] < at:
                    mine[code] = (at, value, subject.device_id)
    if not newest:
        return
    scored_ids = [p for p, m in newest.items() if NEWS2_INPUTS & m.keys()]
    latest: dict[str, dict[str, tuple[dt.datetime, float]]] = defaultdict(dict)
    for row in await repository.latest_vitals(session, scored_ids):
        latest[row.patient_id][row.measurement] = (row.measured_at, row.value)
    organisation_of = {s.patient_id: s.organisation_id for s in subjects}
    subject_of_patient = {s.patient_id: s for s in subjects}
    vitals_rows: list[dict[str, Any]] = []
    score_rows: list[dict[str, Any]] = []
    for patient_id, mine in newest.items():
        for code, (at, value, device_id) in mine.items():
            vitals_rows.append(
                _vital(patient_id, organisation_of[patient_id], device_id, code, at, value)
            )
            kept = latest[patient_id].get(code)
            if kept is None or kept[0] < at:
                latest[patient_id][code] = (at, value)
    window = dt.timedelta(seconds=settings.alerts.news2_window_seconds)
    charted = dt.timedelta(seconds=settings.alerts.news2_charted_window_seconds)
    inputs = {
        patient_id: news2_inputs(latest[patient_id], now=now, window=window, charted=charted)
        for patient_id in scored_ids
    }
    # The scale changes a score, never whether there is one: it is looked up only for patients
    # with every NEWS2 input at hand (most monitors send no consciousness level).
    ready = {patient_id: v for patient_id, v in inputs.items() if v is not None}
    scales = await repository.spo2_scales(session, sorted(ready))
    for patient_id, observed in ready.items():
        mine = newest[patient_id]
        result = news2.score(replace(observed, spo2_scale=scales.get(patient_id, 1)))
        previous = latest[patient_id].get(NEWS2_LATEST)
        if (
            previous is None
            or previous[1] != result.score
            or (now - previous[0]).total_seconds() >= NEWS2_STORE_EVERY_SECONDS
        ):
            score_rows.append(
                {
                    "organisation_id": organisation_of[patient_id],
                    "patient_id": patient_id,
                    "scored_at": now,
                    "score": result.score,
                    "risk": result.risk.value,
                    "components": orjson.dumps(result.components).decode(),
                    "spo2_scale": scales.get(patient_id, 1),
                    "live": True,
                }
            )
            device_id = next(iter(mine.values()))[2]
            vitals_rows.append(
                _vital(
                    patient_id,
                    organisation_of[patient_id],
                    device_id,
                    NEWS2_LATEST,
                    now,
                    result.score,
                )
            )
        subject = subject_of_patient[patient_id]
        for rule in rules_of_subject.get(subject.key, ()):
            if rule.kind == RuleKind.NEWS2:
                track = track_for(subject, rule, rule.key, None)
                step_level(
                    rule, track, now, float(result.score), news2_priority(rule, result.score)
                )
    await repository.save_vitals(session, vitals_rows)
    await repository.insert_scores(session, score_rows)


def _vital(
    patient_id: str,
    organisation_id: str,
    device_id: str,
    measurement: str,
    at: dt.datetime,
    value: float,
) -> dict[str, Any]:
    return {
        "patient_id": patient_id,
        "measurement": measurement,
        "organisation_id": organisation_id,
        "device_id": device_id,
        "value": value,
        "measured_at": at,
    }


async def _save(
    uow: UnitOfWork,
    tracked: Sequence[Tracked],
    *,
    wards: dict[str, str | None],
    patients: PatientDirectory,
    now: dt.datetime,
    metrics: Metrics,
) -> int:
    session = uow.session
    conditions: dict[tuple[str, str], Track] = {}
    new_rows: list[tuple[Tracked, dict[str, Any]]] = []
    for item in tracked:
        track = item.track
        if track.dirty:
            # The last track of a condition holds where it stands after this batch.
            conditions[(item.subject.key, track.condition)] = track
        if track.raised is not None:
            new_rows.append((item, _new_row(item, now)))
    kept: list[dict[str, Any]] = []
    dropped: list[tuple[str, str]] = []
    for key, track in conditions.items():
        if track.onset_at is None and track.reference is None and track.settled_at is None:
            dropped.append(key)
            continue
        kept.append(
            {
                "subject": key[0],
                "rule": key[1],
                "onset_at": track.onset_at,
                "reference_value": None if track.reference is None else track.reference[1],
                "reference_at": None if track.reference is None else track.reference[0],
                "evaluated_to": track.settled_at,
            }
        )
    await repository.save_conditions(session, kept, dropped)
    # Alarms that end go first: a new alarm of the same condition may follow in this batch,
    # and only one may be open at a time.
    for item in tracked:
        if item.row is not None and item.track.raised is None:
            await _update_open(uow, item, now=now)
    missing_wards = sorted(
        {i.subject.patient_id for i, _ in new_rows if i.subject.patient_id} - wards.keys()
    )
    if missing_wards:
        wards = wards | await patients.wards(missing_wards)
    for item, row in new_rows:
        row["ward_id"] = wards.get(item.subject.patient_id or "")
    inserted = await repository.insert_alarms(session, [row for _, row in new_rows])
    raised = 0
    for item, row in new_rows:
        if row["id"] not in inserted:
            # Another evaluation holds this condition open already; it speaks for it.
            log.info("alert.concurrent", rule=row["rule"])
            continue
        raised += 1
        metrics.alarm_latency.observe(max(0.0, (now - item.subject.received_at).total_seconds()))
        metrics.alerts_raised.labels(row["rule"]).inc()
        publish_row(uow, AlertRaised, row, now=now)
        for change in item.track.changes:
            publish_row(uow, EVENT_OF_CHANGE[change], row, now=now)
    return raised


def _new_row(item: Tracked, now: dt.datetime) -> dict[str, Any]:
    track, rule, subject = item.track, item.rule, item.subject
    assert track.raised is not None and track.alarm_state is not None  # noqa: S101
    at, value, threshold = track.raised
    last_at, last_value = track.last or (at, value)
    resolved = track.alarm_state == AlarmState.RESOLVED
    return {
        "id": str(uuid.uuid4()),
        "organisation_id": subject.organisation_id,
        "device_id": subject.device_id,
        "patient_id": subject.patient_id,
        "ward_id": None,
        "subject": subject.key,
        "source": TECHNICAL if rule.kind == RuleKind.MISSING_DATA else CLINICAL,
        "state": track.alarm_state.value,
        "measurement": item.measurement,
        "value": value,
        "last_value": last_value,
        "worst_value": track.worst,
        "rule": track.condition,
        "rule_id": rule.id,
        "rule_version": rule.version,
        "threshold": threshold,
        "severity": (track.priority or rule.priority).value,
        "latching": rule.latching,
        "condition_active": track.condition_active,
        "message": None,
        "model_version": None,
        "reading_timestamp": at,
        "last_reading_at": last_at,
        "received_at": subject.received_at,
        "raised_at": now,
        "updated_at": now,
        "resolved_at": now if resolved else None,
    }


async def _update_open(uow: UnitOfWork, item: Tracked, *, now: dt.datetime) -> None:
    row, track = item.row, item.track
    assert row is not None and track.alarm_state is not None  # noqa: S101
    values: dict[str, Any] = {}
    if track.last is not None:
        values |= {"last_value": track.last[1], "last_reading_at": track.last[0]}
    if track.worst is not None and track.worst != row.worst_value:
        values["worst_value"] = track.worst
    priority = track.priority.value if track.priority is not None else row.severity
    if priority != row.severity:
        values["severity"] = priority
        if Priority(priority).rank > Priority(row.severity).rank:
            # A silence never mutes a higher priority: escalation ends the pause.
            values["silenced_until"] = None
    if track.changes:
        values |= {
            "state": track.alarm_state.value,
            "condition_active": track.condition_active,
            "updated_at": now,
        }
        if track.alarm_state == AlarmState.RESOLVED:
            values["resolved_at"] = now
    if not values:
        return
    await repository.update_alarm(uow.session, row.id, values)
    for key, value in values.items():
        setattr(row, key, value)
    for change in track.changes:
        publish_change(uow, EVENT_OF_CHANGE[change], row, now=now)
