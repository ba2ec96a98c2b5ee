"""The daily run's schedule: a cron line of minutes and hours (UTC), and the days it owes."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """When in each UTC day the daily run starts."""

    minutes: frozenset[int]
    hours: frozenset[int]

    @classmethod
    def parse(cls, line: str) -> Schedule:
        """Read `M H * * *`, where M and H are `*` or comma-separated numbers."""
        fields = line.split()
        if len(fields) != 5 or fields[2:] != ["*", "*", "*"]:
            raise ValueError(f"a report schedule is 'minute hour * * *', not {line!r}")
        return cls(_field(fields[0], 60), _field(fields[1], 24))

    def times(self, day: dt.date) -> list[dt.datetime]:
        """The run's start times on `day`, earliest first."""
        midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        return [
            midnight + dt.timedelta(hours=hour, minutes=minute)
            for hour in sorted(self.hours)
            for minute in sorted(self.minutes)
        ]

    def last_at_or_before(self, now: dt.datetime) -> dt.datetime:
        """The latest start time no later than `now`."""
        for day in (now.date(), now.date() - dt.timedelta(days=1)):
            passed = [at for at in self.times(day) if at <= now]
            if passed:
                return passed[-1]
        raise AssertionError("every day has a start time")  # pragma: no cover

    def next_after(self, now: dt.datetime) -> dt.datetime:
        """The earliest start time later than `now`."""
        for day in (now.date(), now.date() + dt.timedelta(days=1)):
            coming = [at for at in self.times(day) if at > now]
            if coming:
                return coming[0]
        raise AssertionError("every day has a start time")  # pragma: no cover


def due_days(
    schedule: Schedule, now: dt.datetime, done_until: dt.date | None, catch_up_days: int
) -> list[dt.date]:
    """The days the run owes at `now`, oldest first: each start reports the day before it.

    After downtime every day since the last one done is owed, at most `catch_up_days` of them;
    before the first run only the latest day is.
    """
    latest = schedule.last_at_or_before(now).date() - dt.timedelta(days=1)
    first = latest - dt.timedelta(days=catch_up_days - 1)
    if done_until is None:
        first = latest
    else:
        first = max(first, done_until + dt.timedelta(days=1))
    return [first + dt.timedelta(days=n) for n in range((latest - first).days + 1)]


def _field(text: str, size: int) -> frozenset[int]:
    if text == "*":
        return frozenset(range(size))
    values = frozenset(int(part) for part in text.split(","))
    if not values or min(values) < 0 or max(values) >= size:
        raise ValueError(f"a report schedule field must lie in 0..{size - 1}, not {text!r}")
    return values
