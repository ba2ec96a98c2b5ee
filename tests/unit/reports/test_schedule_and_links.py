"""The daily run's schedule and the days it owes; signed download links."""

from __future__ import annotations

import datetime as dt

import pytest

from medcloud.reports import links
from medcloud.reports.schedule import Schedule, due_days

DAILY = Schedule.parse("0 2 * * *")


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


@pytest.mark.parametrize(
    "line",
    ["0 2 * * 1", "0 2 * *", "60 2 * * *", "0 24 * * *", "x 2 * * *", "0 2 1 * *"],
)
def test_it_refuses_a_schedule_it_cannot_keep(line: str) -> None:
    with pytest.raises(ValueError):
        Schedule.parse(line)


def test_the_start_times_around_now_are_found_across_midnight() -> None:
    twice = Schedule.parse("30 1,13 * * *")
    assert twice.last_at_or_before(utc("2026-03-02T01:00")) == utc("2026-03-01T13:30")
    assert twice.last_at_or_before(utc("2026-03-02T01:30")) == utc("2026-03-02T01:30")
    assert twice.next_after(utc("2026-03-02T01:30")) == utc("2026-03-02T13:30")
    assert twice.next_after(utc("2026-03-02T14:00")) == utc("2026-03-03T01:30")


def test_each_start_reports_the_day_before_it() -> None:
    assert due_days(DAILY, utc("2026-03-02T02:00"), day("2026-02-28"), 7) == [day("2026-03-01")]
    # Before 02:00 the day before yesterday is the latest owed, and it is done.
    assert due_days(DAILY, utc("2026-03-02T01:59"), day("2026-02-28"), 7) == []


def test_the_first_run_owes_only_the_latest_day() -> None:
    assert due_days(DAILY, utc("2026-03-02T09:00"), None, 7) == [day("2026-03-01")]


def test_after_downtime_every_missed_day_is_owed_up_to_the_bound() -> None:
    owed = due_days(DAILY, utc("2026-03-10T09:00"), day("2026-03-05"), 7)
    assert owed == [day(f"2026-03-0{n}") for n in (6, 7, 8, 9)]
    bounded = due_days(DAILY, utc("2026-03-10T09:00"), day("2026-01-01"), 3)
    assert bounded == [day("2026-03-07"), day("2026-03-08"), day("2026-03-09")]


def test_a_link_opens_only_its_report_and_format_until_it_expires() -> None:
    key = b"k" * 32
    signature = links.sign(key, "r1", "pdf", 1000)
    assert links.verify(key, "r1", "pdf", 1000, signature, now=999.0)
    assert not links.verify(key, "r1", "pdf", 1000, signature, now=1000.0)
    assert not links.verify(key, "r1", "csv", 1000, signature, now=999.0)
    assert not links.verify(key, "r2", "pdf", 1000, signature, now=999.0)
    assert not links.verify(key, "r1", "pdf", 2000, signature, now=999.0)
    assert not links.verify(b"o" * 32, "r1", "pdf", 1000, signature, now=999.0)
