"""The figures of a report, as maths: vitals, NEWS2, alarms and trends."""

from __future__ import annotations

import datetime as dt

import pytest

from medcloud.platform.directory import (
    AlarmFact,
    CampaignCard,
    DeviceCard,
    ReadingBucket,
    ScoreFact,
)
from medcloud.reports.figures import (
    TREND_BUCKETS,
    alarm_summary,
    data_quality,
    day_bounds,
    device_summary,
    news2_summary,
    trend,
    vital_summary,
)

DAY = dt.date(2026, 3, 2)
START, END = day_bounds(DAY)


def at(hours: float) -> dt.datetime:
    return START + dt.timedelta(hours=hours)


def test_a_day_runs_from_utc_midnight_to_the_next() -> None:
    assert (START.isoformat(), END.isoformat()) == (
        "2026-03-02T00:00:00+00:00",
        "2026-03-03T00:00:00+00:00",
    )


def minute(hours: float, low: float, high: float, mean: float, count: int) -> ReadingBucket:
    return ReadingBucket("heart_rate", at(hours), low, high, mean, count)


def test_a_vital_summary_counts_extremes_mean_and_time_in_range() -> None:
    minutes = [
        minute(1, 48, 52, 50, 60),
        minute(2, 58, 62, 60, 60),
        minute(3, 89, 95, 91, 30),
        minute(4, 70, 70, 70, 10),
    ]
    summary = vital_summary("heart_rate", minutes, START, END)
    # The mean weighs each minute by its readings: (50·60 + 60·60 + 91·30 + 70·10) / 160.
    assert (summary.count, summary.min, summary.max, summary.mean) == (160, 48.0, 95.0, 62.69)
    # 51–90 scores 0 in NEWS2: the minutes of mean 60 and 70 are inside, 50 and 91 outside.
    assert summary.time_in_range_percent == 50.0
    assert (summary.reference_low, summary.reference_high) == (51, 90)
    assert (summary.unit, summary.loinc) == ("/min", "8867-4")


def test_figures_are_rounded_once_to_two_decimals() -> None:
    minutes = [ReadingBucket("temperature", at(h), v, v, v, 1) for h, v in ((1, 36.1), (2, 36.2))]
    summary = vital_summary("temperature", [*minutes, minutes[1]], START, END)
    assert summary.mean == 36.17


def test_a_type_without_a_reference_range_has_no_time_in_range() -> None:
    summary = vital_summary("weight", [ReadingBucket("weight", at(1), 80, 80, 80, 1)], START, END)
    assert summary.time_in_range_percent is None and summary.reference_low is None


def test_a_vital_summary_of_nothing_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="needs readings"):
        vital_summary("heart_rate", [], START, END)


def test_a_trend_keeps_half_hour_buckets_with_mean_low_and_high() -> None:
    points = [(at(0), 10.0), (at(0.25), 20.0), (at(12), 5.0), (END, 99.0)]
    buckets = trend(points, START, END)
    assert TREND_BUCKETS == 48
    assert [(b.at, b.mean, b.low, b.high, b.count) for b in buckets] == [
        (START, 15.0, 10.0, 20.0, 2),
        (at(12), 5.0, 5.0, 5.0, 1),
    ]


def test_news2_over_the_day_counts_patients_and_risk_bands() -> None:
    scores = [
        ScoreFact("p1", at(1), 0),
        ScoreFact("p1", at(2), 5),
        ScoreFact("p2", at(3), 6),
        ScoreFact("p2", at(4), 7),
    ]
    summary = news2_summary(scores, START, END)
    assert (summary.count, summary.patients, summary.mean, summary.max) == (4, 2, 4.5, 7)
    assert (summary.medium_risk_count, summary.high_risk_count) == (2, 1)
    assert news2_summary([], START, END).mean is None


def test_alarms_are_summarised_by_time_to_acknowledge_and_escalations() -> None:
    alarms = [
        AlarmFact("a", "p1", "high", at(1), at(1) + dt.timedelta(seconds=30), 0),
        AlarmFact("b", "p1", "medium", at(2), at(2) + dt.timedelta(seconds=90), 2),
        AlarmFact("c", "p2", "high", at(3), at(3) + dt.timedelta(seconds=300), 1),
        AlarmFact("d", None, "low", at(4), None, 0),
    ]
    summary = alarm_summary(alarms)
    assert summary.raised == 4 and summary.acknowledged == 3
    assert summary.by_priority == {"high": 2, "low": 1, "medium": 1}
    assert summary.median_seconds_to_acknowledge == 90.0
    assert summary.max_seconds_to_acknowledge == 300.0
    assert (summary.escalated, summary.escalations) == (2, 3)


def test_a_day_without_alarms_has_no_times() -> None:
    summary = alarm_summary([])
    assert summary.raised == 0 and summary.median_seconds_to_acknowledge is None


def test_minutes_fold_into_the_half_hours_of_the_trend() -> None:
    minutes = [minute(0, 60, 70, 65, 60), minute(0.25, 50, 90, 80, 20), minute(13, 40, 40, 40, 5)]
    buckets = vital_summary("heart_rate", minutes, START, END).trend
    assert [(b.at, b.mean, b.low, b.high, b.count) for b in buckets] == [
        (START, 68.75, 50.0, 90.0, 80),
        (at(13), 40.0, 40.0, 40.0, 5),
    ]


def test_refusals_and_devices_are_counted() -> None:
    assert data_quality({"spo2": 2, "body": 1}).model_dump() == {
        "rejected": 3,
        "by_item": {"body": 1, "spo2": 2},
    }
    cards = [
        DeviceCard(f"d{n}", "o", None, f"S{n}", "Acme", "PulseOx", None, firmware, status, START)
        for n, (firmware, status) in enumerate(
            [("1.0", "online"), ("1.0", "offline"), (None, "online")]
        )
    ]
    campaign = CampaignCard("c1", "nightly", "paused", 1, 4, {"succeeded": 3, "failed": 2})
    assert device_summary(cards, [campaign]).model_dump() == {
        "devices": 3,
        "by_status": {"offline": 1, "online": 2},
        "firmware": {"1.0": 2, "unknown": 1},
        "campaigns": [
            {
                "name": "nightly",
                "status": "paused",
                "wave": "2/4",
                "targets": {"failed": 2, "succeeded": 3},
            }
        ],
    }
