"""The alarm lifecycle and the rules, without I/O: transitions, delay, hysteresis, latching,
NEWS2 bands, which rule applies to a patient, and what a rule may be."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medcloud.analytics.alarms import (
    Action,
    AlarmState,
    Change,
    IllegalTransition,
    Track,
    clear,
    news2_priority,
    step_level,
    step_rate,
    step_threshold,
    transition,
)
from medcloud.analytics.rules import (
    HEART_RATE_MAX_DELAY_SECONDS,
    Priority,
    Rule,
    RuleKind,
    Scope,
    default_rules,
    effective_rules,
    validate,
)
from medcloud.config import AlertSettings
from medcloud.platform.errors import Conflict, FieldError

T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=dt.UTC)
DEFAULTS = default_rules(AlertSettings())
HEART_RATE = next(rule for rule in DEFAULTS if rule.key == "heart_rate")
NEWS2 = next(rule for rule in DEFAULTS if rule.key == "news2")
LATCHING = replace(HEART_RATE, latching=True)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def run(
    rule: Rule, side: str, values: Iterable[float], track: Track | None = None, start: float = 0
) -> Track:
    """Feed one reading a second to a threshold condition, as evaluation does."""
    track = track or Track(f"{rule.key}_{side}")
    for offset, value in enumerate(values):
        step_threshold(rule, side, track, at(start + offset), value)
    return track


def state(track: Track) -> AlarmState | None:
    """The track's state, read afresh (each step may move it)."""
    return track.alarm_state


def priority_of(track: Track) -> Priority | None:
    return track.priority


def fields(errors: Iterable[FieldError]) -> list[str]:
    return [error.field for error in errors]


# The lifecycle


def test_acknowledging_an_active_alarm_whose_condition_holds_makes_it_acknowledged() -> None:
    moved = transition(
        AlarmState.ACTIVE, latching=False, condition_active=True, action=Action.ACKNOWLEDGE
    )
    assert moved.state == AlarmState.ACKNOWLEDGED
    assert moved.condition_active is True
    assert moved.change == Change.ACKNOWLEDGED


def test_acknowledging_a_latched_alarm_whose_condition_is_over_resolves_it() -> None:
    moved = transition(
        AlarmState.ACTIVE, latching=True, condition_active=False, action=Action.ACKNOWLEDGE
    )
    assert moved.state == AlarmState.RESOLVED
    assert moved.change == Change.ACKNOWLEDGED


def test_an_alarm_cannot_be_acknowledged_twice() -> None:
    with pytest.raises(IllegalTransition):
        transition(
            AlarmState.ACKNOWLEDGED,
            latching=False,
            condition_active=True,
            action=Action.ACKNOWLEDGE,
        )


@pytest.mark.parametrize("action", list(Action))
def test_a_resolved_alarm_moves_no_more(action: Action) -> None:
    with pytest.raises(IllegalTransition):
        transition(AlarmState.RESOLVED, latching=False, condition_active=False, action=action)


def test_an_illegal_transition_is_a_conflict() -> None:
    assert issubclass(IllegalTransition, Conflict)
    assert IllegalTransition("x").status == 409


@pytest.mark.parametrize("state", [AlarmState.ACTIVE, AlarmState.ACKNOWLEDGED])
@pytest.mark.parametrize("latching", [False, True])
def test_silencing_changes_nothing_but_is_published(state: AlarmState, latching: bool) -> None:
    moved = transition(state, latching=latching, condition_active=True, action=Action.SILENCE)
    assert (moved.state, moved.condition_active, moved.change) == (
        state,
        True,
        Change.SILENCED,
    )


def test_a_non_latching_alarm_resolves_when_its_condition_clears() -> None:
    moved = transition(
        AlarmState.ACTIVE, latching=False, condition_active=True, action=Action.CLEAR
    )
    assert (moved.state, moved.condition_active, moved.change) == (
        AlarmState.RESOLVED,
        False,
        Change.RESOLVED,
    )


def test_a_latching_alarm_stays_active_when_its_condition_clears() -> None:
    moved = transition(AlarmState.ACTIVE, latching=True, condition_active=True, action=Action.CLEAR)
    assert (moved.state, moved.condition_active, moved.change) == (
        AlarmState.ACTIVE,
        False,
        Change.UPDATED,
    )


def test_an_acknowledged_latching_alarm_resolves_when_its_condition_clears() -> None:
    moved = transition(
        AlarmState.ACKNOWLEDGED, latching=True, condition_active=True, action=Action.CLEAR
    )
    assert moved.state == AlarmState.RESOLVED
    assert moved.change == Change.RESOLVED


def test_a_condition_coming_back_on_a_latched_alarm_is_an_update() -> None:
    moved = transition(
        AlarmState.ACTIVE, latching=True, condition_active=False, action=Action.RECUR
    )
    assert (moved.state, moved.condition_active, moved.change) == (
        AlarmState.ACTIVE,
        True,
        Change.UPDATED,
    )


def test_the_source_resolving_a_condition_resolves_its_alarm() -> None:
    moved = transition(
        AlarmState.ACTIVE, latching=True, condition_active=True, action=Action.RESOLVE
    )
    assert moved.state == AlarmState.RESOLVED
    assert moved.change == Change.RESOLVED


# Threshold conditions


@pytest.mark.parametrize(
    ("side", "value", "raised"),
    [
        ("high", 120, False),
        ("high", 120.5, True),
        ("high", 121, True),
        ("low", 40, False),
        ("low", 39.5, True),
        ("low", 39, True),
    ],
)
def test_the_default_heart_rate_rule_raises_only_outside_40_to_120(
    side: str, value: float, raised: bool
) -> None:
    track = run(HEART_RATE, side, [value])
    assert track.is_open is raised
    if raised:
        assert track.alarm_state == AlarmState.ACTIVE
        assert track.raised == (at(0), value, 120 if side == "high" else 40)
        assert track.priority == Priority.HIGH


def test_repeated_abnormal_values_keep_one_alarm_and_follow_its_last_and_worst_value() -> None:
    track = run(HEART_RATE, "high", [130, 140, 135])
    assert track.raised == (at(0), 130, 120)
    assert track.last == (at(2), 135)
    assert track.worst == 140
    assert track.changes == []
    assert track.alarm_state == AlarmState.ACTIVE


def test_the_worst_of_a_low_alarm_is_the_lowest_value() -> None:
    track = run(HEART_RATE, "low", [35, 30, 38])
    assert track.worst == 30
    assert track.last == (at(2), 38)


def test_hysteresis_keeps_the_alarm_open_inside_the_band() -> None:
    track = run(HEART_RATE, "high", [121, 119, 121, 118, 121, 116, 115.5])
    assert track.alarm_state == AlarmState.ACTIVE
    assert track.changes == []
    run(HEART_RATE, "high", [115], track=track, start=10)
    assert state(track) == AlarmState.RESOLVED
    assert track.condition_active is False
    assert track.changes == [Change.RESOLVED]


def test_hysteresis_on_the_low_side_clears_at_the_limit_plus_the_band() -> None:
    track = run(HEART_RATE, "low", [39, 44.5])
    assert track.alarm_state == AlarmState.ACTIVE
    run(HEART_RATE, "low", [45], track=track, start=5)
    assert state(track) == AlarmState.RESOLVED


@given(st.lists(st.floats(min_value=115.01, max_value=120), min_size=1, max_size=30))
def test_values_inside_the_band_never_resolve_a_raised_alarm(values: list[float]) -> None:
    track = run(HEART_RATE, "high", [121, *values])
    assert track.alarm_state == AlarmState.ACTIVE
    assert track.changes == []


@given(st.lists(st.floats(min_value=0, max_value=350), min_size=1, max_size=40))
def test_a_non_latching_threshold_is_open_exactly_as_the_band_says(values: list[float]) -> None:
    track = Track("heart_rate_high")
    open_ = False
    for offset, value in enumerate(values):
        if track.raised is not None and not track.is_open:
            track = Track("heart_rate_high")  # evaluation starts a new episode anew
        step_threshold(HEART_RATE, "high", track, at(offset), value)
        open_ = value > 115 if open_ else value > 120
        assert track.is_open is open_


def test_a_condition_shorter_than_the_delay_raises_nothing() -> None:
    rule = replace(HEART_RATE, delay_seconds=5)
    track = run(rule, "high", [150, 150, 150, 150])
    assert not track.is_open
    assert track.onset_at == at(0)
    assert track.dirty
    run(rule, "high", [80], track=track, start=4)
    assert not track.is_open
    assert track.onset_at is None
    assert track.raised is None


def test_a_condition_lasting_the_delay_raises_at_the_first_reading_past_it() -> None:
    rule = replace(HEART_RATE, delay_seconds=5)
    track = run(rule, "high", [150, 151, 152, 153, 154])
    assert not track.is_open
    run(rule, "high", [155, 156], track=track, start=5)
    assert track.is_open
    assert track.raised == (at(5), 155, 120)
    assert track.onset_at is None
    assert track.last == (at(6), 156)


def test_a_delay_is_measured_from_the_onset_kept_between_batches() -> None:
    rule = replace(HEART_RATE, delay_seconds=5)
    track = Track("heart_rate_high", onset_at=at(0))
    step_threshold(rule, "high", track, at(4), 150)
    assert not track.is_open
    step_threshold(rule, "high", track, at(5), 150)
    assert track.is_open


def test_a_latching_alarm_outlives_its_condition_and_notes_it_coming_back() -> None:
    track = run(LATCHING, "high", [130, 80, 70])
    assert track.alarm_state == AlarmState.ACTIVE
    assert track.condition_active is False
    assert track.latching
    assert track.changes == [Change.UPDATED]
    run(LATCHING, "high", [140], track=track, start=5)
    assert track.alarm_state == AlarmState.ACTIVE
    assert track.condition_active is True
    assert track.worst == 140
    assert track.changes == [Change.UPDATED, Change.UPDATED]


def test_an_acknowledged_alarm_resolves_when_its_condition_clears() -> None:
    track = Track(
        "heart_rate_high",
        alarm_state=AlarmState.ACKNOWLEDGED,
        latching=True,
        condition_active=True,
        priority=Priority.HIGH,
        worst=130,
    )
    run(LATCHING, "high", [125, 90], track=track)
    assert track.alarm_state == AlarmState.RESOLVED
    assert track.changes == [Change.RESOLVED]
    assert track.worst == 130


# Rate of change


def test_a_rate_of_change_compares_each_window_with_the_one_before() -> None:
    rule = Rule(
        "spo2_fall",
        RuleKind.RATE_OF_CHANGE,
        "spo2",
        Priority.MEDIUM,
        low=-4,
        window_seconds=60,
    )
    track = Track("spo2_fall_low")
    step_rate(rule, "low", track, at(0), 97)
    assert track.reference == (at(0), 97)
    step_rate(rule, "low", track, at(30), 90)
    assert not track.is_open  # half a window: not judged yet
    step_rate(rule, "low", track, at(60), 94)
    assert not track.is_open  # -3 over the window
    step_rate(rule, "low", track, at(120), 89)
    assert track.is_open
    assert track.raised == (at(120), 89, -4)


def test_a_rate_of_change_starts_over_after_a_gap() -> None:
    rule = Rule(
        "hr_rise", RuleKind.RATE_OF_CHANGE, "heart_rate", Priority.LOW, high=20, window_seconds=60
    )
    track = Track("hr_rise_high")
    step_rate(rule, "high", track, at(0), 60)
    step_rate(rule, "high", track, at(300), 100)  # more than two windows later
    assert not track.is_open
    assert track.reference == (at(300), 100)


# NEWS2 bands


@pytest.mark.parametrize(
    ("score", "priority"),
    [
        (0, None),
        (4, None),
        (5, Priority.MEDIUM),
        (6, Priority.MEDIUM),
        (7, Priority.HIGH),
        (20, Priority.HIGH),
    ],
)
def test_news2_scores_of_5_and_7_raise_medium_and_high_alarms(
    score: int, priority: Priority | None
) -> None:
    assert news2_priority(NEWS2, score) == priority


def test_a_news2_alarm_escalates_then_clears_with_the_score() -> None:
    track = Track("news2")
    step_level(NEWS2, track, at(0), 5, Priority.MEDIUM)
    assert track.is_open and track.priority == Priority.MEDIUM
    assert track.raised == (at(0), 5, 5)
    track.raised = None  # saved: the next batch sees it as an open alarm
    step_level(NEWS2, track, at(60), 8, Priority.HIGH)
    assert priority_of(track) == Priority.HIGH
    assert track.worst == 8
    assert track.changes == [Change.UPDATED]
    step_level(NEWS2, track, at(120), 2, None)
    assert track.alarm_state == AlarmState.RESOLVED
    assert track.changes == [Change.UPDATED, Change.RESOLVED]


def test_a_high_news2_alarm_names_the_high_band_as_its_threshold() -> None:
    track = Track("news2")
    step_level(NEWS2, track, at(0), 9, Priority.HIGH)
    assert track.priority == Priority.HIGH
    assert track.raised == (at(0), 9, 7)


def test_data_coming_back_clears_a_missing_data_alarm() -> None:
    track = Track(
        "heart_rate_missing",
        alarm_state=AlarmState.ACTIVE,
        condition_active=True,
        priority=Priority.MEDIUM,
    )
    clear(track, at(0), 72)
    assert track.alarm_state == AlarmState.RESOLVED
    assert track.changes == [Change.RESOLVED]


# Rules: defaults, precedence, validation


def test_the_default_heart_rate_rule_is_40_to_120_high_non_latching_with_a_5_bpm_band() -> None:
    assert HEART_RATE.kind == RuleKind.THRESHOLD
    assert (HEART_RATE.low, HEART_RATE.high, HEART_RATE.hysteresis) == (40, 120, 5)
    assert (HEART_RATE.delay_seconds, HEART_RATE.latching) == (0, False)
    assert HEART_RATE.priority == Priority.HIGH
    assert (HEART_RATE.scope, HEART_RATE.version, HEART_RATE.id) == (Scope.DEFAULT, 0, None)
    assert HEART_RATE.conditions() == ("heart_rate_low", "heart_rate_high")
    assert NEWS2.conditions() == ("news2",)


def test_the_default_limits_come_from_settings() -> None:
    rules = default_rules(AlertSettings(heart_rate_low=50, heart_rate_high=100))
    heart_rate = next(rule for rule in rules if rule.key == "heart_rate")
    assert (heart_rate.low, heart_rate.high) == (50, 100)


def test_a_one_sided_rule_names_one_condition() -> None:
    rule = Rule("spo2", RuleKind.THRESHOLD, "spo2", Priority.MEDIUM, low=90)
    assert rule.conditions() == ("spo2_low",)


def configured(scope: Scope, scope_id: str, high: float, **extra: object) -> Rule:
    return replace(HEART_RATE, scope=scope, scope_id=scope_id, high=high, version=1, **extra)  # type: ignore[arg-type]


def heart_rate_of(rules: Iterable[Rule]) -> Rule | None:
    return next((rule for rule in rules if rule.key == "heart_rate"), None)


def test_the_narrowest_scope_wins_patient_over_ward_over_organisation_over_default() -> None:
    rules = [
        configured(Scope.ORGANISATION, "", 130),
        configured(Scope.WARD, "cardiology", 125),
        configured(Scope.PATIENT, "peter", 110),
    ]

    def applied(ward_id: str | None, patient_id: str | None) -> float | None:
        rule = heart_rate_of(
            effective_rules(DEFAULTS, rules, ward_id=ward_id, patient_id=patient_id)
        )
        assert rule is not None
        return rule.high

    assert applied("cardiology", "peter") == 110
    assert applied("cardiology", "paula") == 125
    assert applied("oncology", "olive") == 130
    assert applied(None, None) == 130
    assert heart_rate_of(effective_rules(DEFAULTS, [], ward_id=None, patient_id=None)) == HEART_RATE


def test_a_rule_of_another_ward_or_patient_does_not_apply() -> None:
    rules = [configured(Scope.WARD, "oncology", 100), configured(Scope.PATIENT, "olive", 90)]
    rule = heart_rate_of(effective_rules(DEFAULTS, rules, ward_id="cardiology", patient_id="peter"))
    assert rule == HEART_RATE


def test_a_disabled_narrower_rule_turns_its_key_off() -> None:
    rules = [configured(Scope.PATIENT, "peter", 110, enabled=False)]
    applied = effective_rules(DEFAULTS, rules, ward_id=None, patient_id="peter")
    assert heart_rate_of(applied) is None
    assert {rule.key for rule in applied} == {"news2", "heart_rate_forecast", "anomaly"}


def test_the_defaults_are_valid() -> None:
    for rule in DEFAULTS:
        assert validate(rule) == [], rule


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"key": "Heart Rate"}, "key"),
        ({"measurement": "blood_magic"}, "measurement"),
        ({"measurement": None}, "measurement"),
        ({"low": 120, "high": 40}, "low"),
        ({"low": 80, "high": 80}, "low"),
        ({"low": None, "high": None}, "low"),
        ({"high": 400}, "high"),
        ({"low": -1}, "low"),
        ({"hysteresis": -1}, "hysteresis"),
        ({"low": 100, "high": 110, "hysteresis": 5}, "hysteresis"),
        ({"delay_seconds": HEART_RATE_MAX_DELAY_SECONDS + 1}, "delay_seconds"),
        ({"delay_seconds": -1}, "delay_seconds"),
        ({"window_seconds": 90_000}, "window_seconds"),
    ],
)
def test_an_invalid_threshold_rule_names_the_field(change: dict[str, object], field: str) -> None:
    assert field in fields(validate(replace(HEART_RATE, **change)))  # type: ignore[arg-type]


def test_a_heart_rate_delay_of_10_seconds_is_allowed_and_other_measurements_allow_more() -> None:
    assert validate(replace(HEART_RATE, delay_seconds=10)) == []
    spo2 = Rule("spo2", RuleKind.THRESHOLD, "spo2", Priority.MEDIUM, low=90, delay_seconds=60)
    assert validate(spo2) == []


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        (Rule("news2", RuleKind.NEWS2, "heart_rate", Priority.HIGH, low=5, high=7), "measurement"),
        (Rule("news2", RuleKind.NEWS2, None, Priority.HIGH, low=0, high=7), "low"),
        (Rule("news2", RuleKind.NEWS2, None, Priority.HIGH, low=5, high=21), "high"),
        (Rule("fall", RuleKind.RATE_OF_CHANGE, "spo2", Priority.LOW, low=-4), "window_seconds"),
        (
            Rule("fall", RuleKind.RATE_OF_CHANGE, "spo2", Priority.LOW, low=4, window_seconds=60),
            "low",
        ),
        (
            Rule("rise", RuleKind.RATE_OF_CHANGE, "spo2", Priority.LOW, high=-4, window_seconds=60),
            "high",
        ),
        (
            Rule("gap", RuleKind.MISSING_DATA, "spo2", Priority.LOW, window_seconds=5),
            "window_seconds",
        ),
    ],
)
def test_other_kinds_of_rule_are_validated_too(rule: Rule, field: str) -> None:
    assert field in fields(validate(rule))


def test_a_valid_rule_of_each_live_kind_passes() -> None:
    assert (
        validate(
            Rule("fall", RuleKind.RATE_OF_CHANGE, "spo2", Priority.LOW, low=-4, window_seconds=60)
        )
        == []
    )
    assert (
        validate(Rule("gap", RuleKind.MISSING_DATA, "spo2", Priority.LOW, window_seconds=120)) == []
    )
    assert validate(Rule("news2", RuleKind.NEWS2, None, Priority.HIGH, low=3, high=6)) == []
