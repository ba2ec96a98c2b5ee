"""The figures of a report, computed from plain values: no I/O, so they are tested as maths.

Every figure is rounded here, once, and the PDF, CSV and FHIR Bundle print these same numbers.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence

from medcloud.platform.catalogue import CATALOGUE
from medcloud.platform.directory import (
    AlarmFact,
    CampaignCard,
    DeviceCard,
    ReadingBucket,
    ScoreFact,
)
from medcloud.reports.schemas import (
    AlarmSummary,
    CampaignSummary,
    DataQuality,
    DeviceSummary,
    News2Summary,
    TrendPoint,
    VitalSummary,
)

DIGITS = 2
TREND_BUCKETS = 48
"""Half-hour buckets: enough for a day's chart, few enough for a page and a FHIR resource."""
MEDIUM_NEWS2 = 5
HIGH_NEWS2 = 7

# Ranges that score 0 in NEWS2 (RCP 2017) where NEWS2 scores the type; a common adult reference
# range otherwise. SpO2 uses scale 1: a patient on scale 2 spends less time "in range" here,
# which the report states rather than hides.
REFERENCE_RANGES: dict[str, tuple[float, float]] = {
    "heart_rate": (51, 90),
    "respiratory_rate": (12, 20),
    "spo2": (96, 100),
    "temperature": (36.1, 38.0),
    "systolic_bp": (111, 219),
    "diastolic_bp": (60, 90),
}


def rounded(value: float) -> float:
    """Round a figure as every format shows it."""
    return round(value, DIGITS)


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """Return [start, end) of a UTC day."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def trend(
    points: Iterable[tuple[dt.datetime, float]], start: dt.datetime, end: dt.datetime
) -> list[TrendPoint]:
    """Downsample points into TREND_BUCKETS equal buckets of [start, end); empty ones left out."""
    return fold(
        (
            ReadingBucket("", at, value, value, value, 1)
            for at, value in points
            if start <= at < end
        ),
        start,
        end,
    )


def fold(
    buckets: Iterable[ReadingBucket], start: dt.datetime, end: dt.datetime
) -> list[TrendPoint]:
    """Fold narrow buckets (a minute's) into TREND_BUCKETS equal ones of [start, end)."""
    width = (end - start) / TREND_BUCKETS
    wide: dict[int, list[ReadingBucket]] = {}
    for bucket in buckets:
        if start <= bucket.start < end:
            wide.setdefault(int((bucket.start - start) / width), []).append(bucket)
    return [
        TrendPoint(
            at=start + width * index,
            mean=rounded(_mean(members)),
            low=rounded(min(b.low for b in members)),
            high=rounded(max(b.high for b in members)),
            count=sum(b.count for b in members),
        )
        for index, members in sorted(wide.items())
    ]


def _mean(buckets: Sequence[ReadingBucket]) -> float:
    return math.fsum(b.mean * b.count for b in buckets) / sum(b.count for b in buckets)


def vital_summary(
    measurement: str,
    minutes: Sequence[ReadingBucket],
    start: dt.datetime,
    end: dt.datetime,
) -> VitalSummary:
    """Summarise one type's readings (of every patient in the report) over [start, end), from
    per-minute buckets: count, extremes and mean are exact; time in range is the share of the
    monitored minutes (per patient) whose mean lies in the reference range."""
    if not minutes:
        raise ValueError("a vital summary needs readings")
    kind = CATALOGUE[measurement]
    low, high = REFERENCE_RANGES.get(measurement, (math.nan, math.nan))
    in_range: float | None = None
    if not math.isnan(low):
        inside = sum(1 for minute in minutes if low <= minute.mean <= high)
        in_range = rounded(100 * inside / len(minutes))
    return VitalSummary(
        type=measurement,
        display=kind.display,
        unit=kind.unit,
        loinc=kind.loinc,
        count=sum(minute.count for minute in minutes),
        min=rounded(min(minute.low for minute in minutes)),
        max=rounded(max(minute.high for minute in minutes)),
        mean=rounded(_mean(minutes)),
        reference_low=None if math.isnan(low) else low,
        reference_high=None if math.isnan(high) else high,
        time_in_range_percent=in_range,
        trend=fold(minutes, start, end),
    )


def news2_summary(
    scores: Sequence[ScoreFact], start: dt.datetime, end: dt.datetime
) -> News2Summary:
    """Summarise NEWS2 scores over [start, end)."""
    values = [fact.score for fact in scores]
    return News2Summary(
        count=len(values),
        patients=len({fact.patient_id for fact in scores}),
        mean=rounded(statistics.fmean(values)) if values else None,
        max=max(values) if values else None,
        medium_risk_count=sum(1 for v in values if MEDIUM_NEWS2 <= v < HIGH_NEWS2),
        high_risk_count=sum(1 for v in values if v >= HIGH_NEWS2),
        trend=trend(((fact.scored_at, float(fact.score)) for fact in scores), start, end),
    )


def alarm_summary(alarms: Sequence[AlarmFact]) -> AlarmSummary:
    """Summarise alarms: how many, how fast they were acknowledged, how often escalated."""
    waits = [
        (alarm.acknowledged_at - alarm.raised_at).total_seconds()
        for alarm in alarms
        if alarm.acknowledged_at is not None
    ]
    by_priority: dict[str, int] = {}
    for alarm in alarms:
        by_priority[alarm.priority] = by_priority.get(alarm.priority, 0) + 1
    return AlarmSummary(
        raised=len(alarms),
        by_priority=dict(sorted(by_priority.items())),
        acknowledged=len(waits),
        median_seconds_to_acknowledge=rounded(statistics.median(waits)) if waits else None,
        max_seconds_to_acknowledge=rounded(max(waits)) if waits else None,
        escalated=sum(1 for alarm in alarms if alarm.escalations > 0),
        escalations=sum(alarm.escalations for alarm in alarms),
    )


def data_quality(rejections: dict[str, int]) -> DataQuality:
    """Summarise the gate's refusals."""
    return DataQuality(rejected=sum(rejections.values()), by_item=dict(sorted(rejections.items())))


def device_summary(
    devices: Sequence[DeviceCard], campaigns: Sequence[CampaignCard] = ()
) -> DeviceSummary:
    """Count devices by status and by firmware version, and sum up the campaigns."""
    return DeviceSummary(
        devices=len(devices),
        by_status=dict(sorted(Counter(d.status for d in devices).items())),
        firmware=dict(sorted(Counter(d.firmware_version or "unknown" for d in devices).items())),
        campaigns=[
            CampaignSummary(
                name=c.name,
                status=c.status,
                wave=f"{c.current_wave + 1}/{c.waves}",
                targets=dict(sorted(c.targets.items())),
            )
            for c in campaigns
        ],
    )
