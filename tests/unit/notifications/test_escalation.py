"""The rules of escalation, without I/O: when each step of a chain is due and what follows it,
quiet hours on the recipient's wall clock, which channels to try, retry backoff, and reading a
wall-clock time in a time zone."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medcloud.notifications.escalation import (
    DEFAULT_CHAINS,
    DEFAULT_CHANNELS,
    Chain,
    Step,
    channels_for,
    in_quiet_hours,
    localise,
    retry_delay,
)

T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
HIGH = DEFAULT_CHAINS["high"]
BERLIN = "Europe/Berlin"
EVERY_CHANNEL = ("sms", "email")
DETERMINISTIC = settings(derandomize=True, deadline=None)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def upper_bound(low: float, high: float) -> float:
    """A `uniform` with no jitter: always the ceiling."""
    assert low == 0.0
    return high


# Chains: when each step is due, and what follows it


def test_the_default_high_chain_is_primary_then_charge_then_physician_repeating() -> None:
    assert HIGH == Chain((Step(0, "primary"), Step(120, "charge"), Step(300, "physician")), 300)


@pytest.mark.parametrize(
    ("step", "round_", "seconds"),
    [
        (0, 0, 0),
        (1, 0, 120),
        (2, 0, 300),
        (0, 1, 600),
        (1, 1, 720),
        (2, 1, 900),
        (0, 2, 1200),
        (1, 2, 1320),
        (2, 2, 1500),
    ],
)
def test_a_high_step_is_due_its_offset_after_the_start_of_its_round(
    step: int, round_: int, seconds: int
) -> None:
    # A round lasts until the last step (300 s) plus the repeat (300 s).
    assert HIGH.due_at(T0, step, round_) == at(seconds)


def test_due_times_keep_the_time_zone_of_the_raising() -> None:
    raised = dt.datetime(2026, 3, 1, 9, 0, tzinfo=ZoneInfo(BERLIN))
    assert HIGH.due_at(raised, 1, 1) == raised + dt.timedelta(seconds=720)


def test_a_chain_without_repeat_times_its_steps_from_the_raising() -> None:
    medium = DEFAULT_CHAINS["medium"]
    assert [medium.due_at(T0, step, 0) for step in range(2)] == [at(0), at(300)]


def test_after_walks_the_high_chain_and_starts_it_again() -> None:
    walked: list[tuple[int, int]] = [(0, 0)]
    while len(walked) < 8:
        following = HIGH.after(*walked[-1])
        assert following is not None
        walked.append(following)
    assert walked == [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2), (1, 2)]


def test_after_ends_a_chain_without_repeat() -> None:
    medium, low = DEFAULT_CHAINS["medium"], DEFAULT_CHAINS["low"]
    assert medium.after(0, 0) == (1, 0)
    assert medium.after(1, 0) is None
    assert low.after(0, 0) is None


@pytest.mark.parametrize("priority", sorted(DEFAULT_CHAINS))
def test_a_chain_survives_its_stored_form(priority: str) -> None:
    chain = DEFAULT_CHAINS[priority]
    stored = [step.as_json() for step in chain.steps]
    assert Chain.from_json(stored, chain.repeat_after_seconds) == chain


def test_a_step_is_stored_as_its_offset_and_target() -> None:
    assert Step(120, "charge").as_json() == {"after_seconds": 120, "notify": "charge"}


def test_from_json_coerces_what_it_reads() -> None:
    chain = Chain.from_json([{"after_seconds": "60", "notify": "primary"}], None)
    assert chain == Chain((Step(60, "primary"),), None)


offsets = st.lists(st.integers(min_value=0, max_value=86_400), min_size=1, max_size=6).map(sorted)
repeats = st.none() | st.integers(min_value=0, max_value=86_400)
targets = st.sampled_from(["primary", "charge", "physician", "care_team"])


@DETERMINISTIC
@given(
    st.lists(st.tuples(st.integers(min_value=0, max_value=86_400), targets), max_size=6),
    repeats,
)
def test_any_chain_survives_its_stored_form(
    pairs: list[tuple[int, str]], repeat: int | None
) -> None:
    chain = Chain(tuple(Step(after, notify) for after, notify in pairs), repeat)
    assert Chain.from_json([step.as_json() for step in chain.steps], repeat) == chain


@DETERMINISTIC
@given(offsets, repeats)
def test_due_times_never_go_back_along_the_chain(times: list[int], repeat: int | None) -> None:
    chain = Chain(tuple(Step(seconds, "primary") for seconds in times), repeat)
    position: tuple[int, int] | None = (0, 0)
    due: list[dt.datetime] = []
    for _ in range(4 * len(times) + 1):
        if position is None:
            break
        due.append(chain.due_at(T0, *position))
        position = chain.after(*position)
    assert due[0] == at(times[0])
    assert due == sorted(due)
    if repeat is None:
        assert position is None and len(due) == len(times)


# Quiet hours


@pytest.mark.parametrize(
    ("clock", "quiet"),
    [
        ("11:59:59", False),
        ("12:00:00", True),
        ("13:00:00", True),
        ("13:59:59", True),
        ("14:00:00", False),
        ("00:00:00", False),
        ("23:00:00", False),
    ],
)
def test_a_same_day_window_includes_its_start_and_excludes_its_end(clock: str, quiet: bool) -> None:
    now = utc(f"2026-01-15T{clock}")
    assert in_quiet_hours("12:00", "14:00", "UTC", now) is quiet


@pytest.mark.parametrize(
    ("clock", "quiet"),
    [
        ("21:59:59", False),
        ("22:00:00", True),
        ("23:59:59", True),
        ("00:00:00", True),
        ("03:00:00", True),
        ("06:59:59", True),
        ("07:00:00", False),
        ("12:00:00", False),
    ],
)
def test_a_window_past_midnight_includes_its_start_and_excludes_its_end(
    clock: str, quiet: bool
) -> None:
    now = utc(f"2026-01-15T{clock}")
    assert in_quiet_hours("22:00", "07:00", "UTC", now) is quiet


@pytest.mark.parametrize(
    ("now", "quiet"),
    [
        # Winter: CET, UTC+1.
        ("2026-01-15T20:59:59", False),  # 21:59:59 in Berlin
        ("2026-01-15T21:00:00", True),  # 22:00
        ("2026-01-15T21:30:00", True),  # 22:30
        ("2026-01-16T05:59:00", True),  # 06:59
        ("2026-01-16T06:00:00", False),  # 07:00
        # Summer: CEST, UTC+2.
        ("2026-07-15T19:59:59", False),  # 21:59:59 in Berlin
        ("2026-07-15T20:00:00", True),  # 22:00
        ("2026-07-15T20:30:00", True),  # 22:30
        ("2026-07-16T04:59:00", True),  # 06:59
        ("2026-07-16T05:00:00", False),  # 07:00
    ],
)
def test_quiet_hours_are_read_on_the_recipients_wall_clock(now: str, quiet: bool) -> None:
    assert in_quiet_hours("22:00", "07:00", BERLIN, utc(now)) is quiet


def test_the_time_zone_decides_quiet_hours() -> None:
    now = utc("2026-07-15T20:30:00")
    assert in_quiet_hours("22:00", "07:00", BERLIN, now)
    assert not in_quiet_hours("22:00", "07:00", "UTC", now)
    assert not in_quiet_hours("22:00", "07:00", "America/New_York", now)


def test_the_zone_now_is_given_in_does_not_matter() -> None:
    instant = utc("2026-01-15T21:30:00")
    elsewhere = instant.astimezone(ZoneInfo("Asia/Tokyo"))
    assert in_quiet_hours("22:00", "07:00", BERLIN, elsewhere)


@DETERMINISTIC
@given(
    st.sampled_from([(None, None), ("", ""), (None, "07:00"), ("22:00", None), ("", "07:00")])
    | st.sampled_from(["00:00", "07:00", "12:00", "22:00", "23:59"]).map(lambda t: (t, t)),
    st.datetimes(
        min_value=dt.datetime(2000, 1, 1),
        max_value=dt.datetime(2100, 1, 1),
        timezones=st.just(dt.UTC),
    ),
    st.sampled_from(["UTC", BERLIN, "America/New_York", "Asia/Kolkata"]),
)
def test_an_empty_or_zero_length_window_is_never_quiet(
    window: tuple[str | None, str | None], now: dt.datetime, zone: str
) -> None:
    start, end = window
    assert not in_quiet_hours(start, end, zone, now)


clock_times = st.builds(
    lambda hour, minute: f"{hour:02d}:{minute:02d}",
    st.integers(min_value=0, max_value=23),
    st.integers(min_value=0, max_value=59),
)


@DETERMINISTIC
@given(clock_times, clock_times, st.integers(min_value=0, max_value=24 * 60 * 60 - 1))
def test_a_window_and_its_reverse_split_the_day(start: str, end: str, second: int) -> None:
    if start == end:
        return
    now = at(second)
    assert in_quiet_hours(start, end, "UTC", now) != in_quiet_hours(end, start, "UTC", now)


# Channels


@pytest.mark.parametrize("priority", ["medium", "low"])
def test_quiet_hours_keep_medium_and_low_to_the_inbox(priority: str) -> None:
    preferences = {priority: ["sms", "email"]}
    assert channels_for(priority, preferences, quiet=True, reachable=EVERY_CHANNEL) == []
    assert channels_for(priority, preferences, quiet=False, reachable=EVERY_CHANNEL) == [
        "sms",
        "email",
    ]


def test_quiet_hours_never_hold_back_a_high_alarm() -> None:
    assert channels_for("high", None, quiet=True, reachable=EVERY_CHANNEL) == ["sms", "email"]
    assert channels_for("high", {"high": ["email"]}, quiet=True, reachable=EVERY_CHANNEL) == [
        "email"
    ]


@pytest.mark.parametrize("priority", ["high", "medium", "low"])
def test_no_preferences_means_the_defaults(priority: str) -> None:
    assert (
        channels_for(priority, None, quiet=False, reachable=EVERY_CHANNEL)
        == (DEFAULT_CHANNELS[priority])
    )


def test_the_defaults_are_sms_and_email_for_high_and_email_for_medium() -> None:
    assert DEFAULT_CHANNELS == {"high": ["sms", "email"], "medium": ["email"], "low": []}


def test_a_priority_missing_from_the_preferences_uses_the_default() -> None:
    preferences = {"medium": ["sms"]}
    assert channels_for("high", preferences, quiet=False, reachable=EVERY_CHANNEL) == [
        "sms",
        "email",
    ]
    assert channels_for("medium", preferences, quiet=False, reachable=EVERY_CHANNEL) == ["sms"]


def test_an_explicitly_empty_preference_is_kept() -> None:
    assert channels_for("high", {"high": []}, quiet=False, reachable=EVERY_CHANNEL) == []


def test_an_unknown_priority_has_no_channels() -> None:
    assert channels_for("critical", None, quiet=False, reachable=EVERY_CHANNEL) == []


@pytest.mark.parametrize(
    ("reachable", "expected"),
    [
        (("sms", "email"), ["email", "sms"]),
        (("email", "sms"), ["email", "sms"]),
        (("sms",), ["sms"]),
        (("email",), ["email"]),
        ((), []),
    ],
)
def test_unreachable_channels_drop_out_and_the_order_is_kept(
    reachable: tuple[str, ...], expected: list[str]
) -> None:
    preferences = {"high": ["email", "sms"]}
    assert channels_for("high", preferences, quiet=False, reachable=reachable) == expected


def test_the_channels_returned_are_a_copy_of_the_defaults() -> None:
    channels = channels_for("high", None, quiet=False, reachable=EVERY_CHANNEL)
    channels.append("pager")
    assert DEFAULT_CHANNELS["high"] == ["sms", "email"]


# Retry backoff


def test_the_ceiling_doubles_per_attempt_up_to_the_maximum() -> None:
    delays = [
        retry_delay(attempt, base_seconds=1.0, max_seconds=60.0, uniform=upper_bound)
        for attempt in range(1, 10)
    ]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_the_ceiling_starts_from_the_base() -> None:
    delays = [
        retry_delay(attempt, base_seconds=2.5, max_seconds=30.0, uniform=upper_bound)
        for attempt in range(1, 6)
    ]
    assert delays == [2.5, 5.0, 10.0, 20.0, 30.0]


def test_attempt_zero_waits_no_longer_than_the_base() -> None:
    assert retry_delay(0, base_seconds=1.0, max_seconds=60.0, uniform=upper_bound) == 1.0


def test_the_jitter_is_drawn_from_zero_to_the_ceiling() -> None:
    drawn: list[tuple[float, float]] = []

    def record(low: float, high: float) -> float:
        drawn.append((low, high))
        return 0.0

    assert retry_delay(3, base_seconds=1.0, max_seconds=60.0, uniform=record) == 0.0
    assert drawn == [(0.0, 4.0)]


@DETERMINISTIC
@given(
    st.integers(min_value=0, max_value=10_000),
    st.floats(min_value=0.01, max_value=600.0),
    st.floats(min_value=0.01, max_value=86_400.0),
)
def test_a_jittered_delay_lies_between_zero_and_the_ceiling(
    attempt: int, base: float, maximum: float
) -> None:
    # Hypothesis seeds the global `random` for each example, so this stays deterministic.
    delay = retry_delay(attempt, base_seconds=base, max_seconds=maximum)
    ceiling = min(Fraction(maximum), Fraction(base) * 2 ** max(attempt - 1, 0))
    assert 0.0 <= delay <= ceiling


def test_a_very_late_attempt_is_still_capped_at_the_maximum() -> None:
    assert retry_delay(1025, base_seconds=1.0, max_seconds=60.0, uniform=upper_bound) == 60.0
    assert retry_delay(10**9, base_seconds=1.0, max_seconds=60.0, uniform=upper_bound) == 60.0


# Wall-clock times


@pytest.mark.parametrize(
    ("wall", "instant"),
    [
        (dt.datetime(2026, 1, 15, 22, 30), "2026-01-15T21:30:00"),  # CET, UTC+1
        (dt.datetime(2026, 7, 15, 22, 30), "2026-07-15T20:30:00"),  # CEST, UTC+2
        (dt.datetime(2026, 3, 29, 1, 59), "2026-03-29T00:59:00"),  # just before spring forward
        (dt.datetime(2026, 3, 29, 3, 0), "2026-03-29T01:00:00"),  # just after
        (dt.datetime(2026, 10, 25, 1, 59), "2026-10-24T23:59:00"),  # just before fall back
        (dt.datetime(2026, 10, 25, 3, 0), "2026-10-25T02:00:00"),  # just after
    ],
)
def test_a_naive_time_is_read_on_the_wall_clock_of_its_zone(
    wall: dt.datetime, instant: str
) -> None:
    assert localise(wall, BERLIN).astimezone(dt.UTC) == utc(instant)


def test_an_ambiguous_wall_clock_time_follows_its_fold() -> None:
    first = dt.datetime(2026, 10, 25, 2, 30)
    assert localise(first, BERLIN).astimezone(dt.UTC) == utc("2026-10-25T00:30:00")
    second = first.replace(fold=1)
    assert localise(second, BERLIN).astimezone(dt.UTC) == utc("2026-10-25T01:30:00")


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(2026, 7, 15, 22, 30, tzinfo=dt.UTC),
        dt.datetime(2026, 7, 15, 22, 30, tzinfo=ZoneInfo("America/New_York")),
        dt.datetime(2026, 7, 15, 22, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    ],
)
def test_an_aware_time_is_kept_as_it_is(value: dt.datetime) -> None:
    kept = localise(value, BERLIN)
    assert kept is value
    assert kept.tzinfo is value.tzinfo
