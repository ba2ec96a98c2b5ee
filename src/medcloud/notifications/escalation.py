"""The rules of escalation, free of I/O: which step is due when, who is told over what, and how
long to wait before trying a channel again."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

PRIORITIES = ("high", "medium", "low")
EXTERNAL_CHANNELS = ("sms", "email")
"""Channels a person can be reached on outside medcloud; the in-app inbox is always told."""
CARE_TEAM = "care_team"
"""A step target meaning every member of the ward's care team."""


@dataclass(frozen=True)
class Step:
    """Tell whoever holds `notify` once `after_seconds` have passed since the alarm was raised."""

    after_seconds: int
    notify: str

    def as_json(self) -> dict[str, Any]:
        """Return the step as stored with a policy and with each escalating alarm."""
        return {"after_seconds": self.after_seconds, "notify": self.notify}


@dataclass(frozen=True)
class Chain:
    """A policy's steps and how long after the last one the chain starts again (None: never)."""

    steps: tuple[Step, ...]
    repeat_after_seconds: int | None

    @classmethod
    def from_json(cls, steps: Sequence[Mapping[str, Any]], repeat: int | None) -> Chain:
        """Rebuild a chain from its stored form."""
        return cls(tuple(Step(int(s["after_seconds"]), str(s["notify"])) for s in steps), repeat)

    def due_at(self, raised_at: dt.datetime, step: int, round_: int) -> dt.datetime:
        """When step `step` of round `round_` is due: times count from the alarm's raising."""
        period = self.steps[-1].after_seconds + (self.repeat_after_seconds or 0)
        return raised_at + dt.timedelta(seconds=round_ * period + self.steps[step].after_seconds)

    def after(self, step: int, round_: int) -> tuple[int, int] | None:
        """The step that follows `step` of round `round_`, or None when the chain is over."""
        if step + 1 < len(self.steps):
            return step + 1, round_
        if self.repeat_after_seconds is None:
            return None
        return 0, round_ + 1


# Primary nurse at once, then the charge nurse, then the physician on call, then again: what a
# ward runs with until it writes its own policy.
DEFAULT_CHAINS: dict[str, Chain] = {
    "high": Chain((Step(0, "primary"), Step(120, "charge"), Step(300, "physician")), 300),
    "medium": Chain((Step(0, "primary"), Step(300, "charge")), None),
    "low": Chain((Step(0, "primary"),), None),
}

DEFAULT_CHANNELS: dict[str, list[str]] = {"high": ["sms", "email"], "medium": ["email"], "low": []}
"""External channels per priority for someone who has set no preference."""


def in_quiet_hours(start: str | None, end: str | None, time_zone: str, now: dt.datetime) -> bool:
    """Tell whether `now`, read on the recipient's wall clock, falls in [start, end).

    A window may wrap past midnight ("22:00"–"07:00"); an empty or zero-length window is no
    quiet time at all.
    """
    if not start or not end or start == end:
        return False
    local = now.astimezone(ZoneInfo(time_zone)).strftime("%H:%M")
    if start < end:
        return start <= local < end
    return local >= start or local < end


def channels_for(
    priority: str,
    preferences: Mapping[str, Sequence[str]] | None,
    *,
    quiet: bool,
    reachable: Sequence[str],
) -> list[str]:
    """The external channels to try, in order, for an alarm of `priority`.

    Quiet hours keep medium and low priority to the inbox; they never hold back a high one.
    Channels the platform has no provider for, or the recipient no address on, drop out.
    """
    if quiet and priority != "high":
        return []
    wanted = (preferences or {}).get(priority, DEFAULT_CHANNELS.get(priority, []))
    return [channel for channel in wanted if channel in reachable]


def retry_delay(
    attempt: int,
    *,
    base_seconds: float,
    max_seconds: float,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): exponential backoff
    with full jitter, so many deliveries failing together do not retry together."""
    # The exponent is bounded: past 2**60 the cap has long applied, and a float would overflow.
    ceiling = min(max_seconds, base_seconds * 2 ** min(max(attempt - 1, 0), 60))
    return uniform(0.0, ceiling)


def localise(value: dt.datetime, time_zone: str) -> dt.datetime:
    """Read a wall-clock time in `time_zone` (DST-aware); an aware time is kept as it is."""
    if value.tzinfo is not None:
        return value
    return value.replace(tzinfo=ZoneInfo(time_zone))
