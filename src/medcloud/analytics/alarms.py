"""The alarm lifecycle (IEC 60601-1-8) and how a stream of values moves it. Pure: no I/O.

An alarm is active until acknowledged or, for a non-latching rule, until its condition is over.
A latching alarm outlives its condition: it stays active, marked `condition_active = False`,
until someone acknowledges it. An acknowledged alarm resolves when its condition is over.
Silencing pauses one alarm's audible signal for a bounded time and changes nothing else.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from medcloud.analytics.rules import Priority, Rule
from medcloud.platform.errors import Conflict


class AlarmState(StrEnum):
    """Where an alarm is in its lifecycle."""

    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Action(StrEnum):
    """What can happen to an alarm."""

    ACKNOWLEDGE = "acknowledge"
    SILENCE = "silence"
    CLEAR = "clear"
    """The condition is over (the value is back inside the hysteresis band)."""
    RECUR = "recur"
    """The condition is back while a latched alarm still waits for acknowledgement."""
    RESOLVE = "resolve"
    """The source says it is over (a device's technical condition ended)."""
    ESCALATE_PRIORITY = "escalate_priority"
    """The condition's priority changed (a NEWS2 band up or down)."""


class Change(StrEnum):
    """The event a transition publishes, by its routing key's last word."""

    UPDATED = "updated"
    ACKNOWLEDGED = "acknowledged"
    SILENCED = "silenced"
    RESOLVED = "resolved"


class IllegalTransition(Conflict):
    """The alarm's state does not allow this."""


@dataclass(frozen=True)
class Transition:
    """The outcome of one action: the new state, whether the condition holds, what to publish."""

    state: AlarmState
    condition_active: bool
    change: Change


def transition(
    state: AlarmState, *, latching: bool, condition_active: bool, action: Action
) -> Transition:
    """Return where `action` takes an alarm; raise IllegalTransition where it cannot go."""
    if state == AlarmState.RESOLVED:
        raise IllegalTransition(f"the alarm is resolved; it cannot {action.value}")
    if action == Action.ACKNOWLEDGE:
        if state == AlarmState.ACKNOWLEDGED:
            raise IllegalTransition("the alarm is acknowledged already")
        # A latched alarm whose condition is over needed only this acknowledgement.
        after = AlarmState.ACKNOWLEDGED if condition_active else AlarmState.RESOLVED
        return Transition(after, condition_active, Change.ACKNOWLEDGED)
    if action == Action.SILENCE:
        return Transition(state, condition_active, Change.SILENCED)
    if action == Action.CLEAR:
        if latching and state == AlarmState.ACTIVE:
            return Transition(AlarmState.ACTIVE, False, Change.UPDATED)
        return Transition(AlarmState.RESOLVED, False, Change.RESOLVED)
    if action == Action.RECUR:
        return Transition(state, True, Change.UPDATED)
    if action == Action.ESCALATE_PRIORITY:
        return Transition(state, condition_active, Change.UPDATED)
    return Transition(AlarmState.RESOLVED, False, Change.RESOLVED)


@dataclass
class Track:
    """One subject and condition as evaluation goes: the open alarm (if any) and what is
    pending. Evaluation changes it in place; the caller saves what changed."""

    condition: str
    alarm_state: AlarmState | None = None
    """None: no open alarm."""
    latching: bool = False
    condition_active: bool = False
    priority: Priority | None = None
    onset_at: dt.datetime | None = None
    reference: tuple[dt.datetime, float] | None = None
    raised: tuple[dt.datetime, float, float | None] | None = None
    """Set when evaluation raised the alarm: (reading time, value, threshold)."""
    changes: list[Change] = field(default_factory=list)
    last: tuple[dt.datetime, float] | None = None
    worst: float | None = None
    dirty: bool = False
    """The condition row (onset, reference, settled) changed and must be saved."""
    horizon: dt.datetime | None = None
    """The open alarm's newest reading: older ones arrived late and do not change it."""
    settled_at: dt.datetime | None = None
    """The last reading of the condition's last alarm: late readings up to it raise none."""

    @property
    def is_open(self) -> bool:
        """Tell whether an alarm is open (raised now or earlier)."""
        return self.alarm_state is not None and self.alarm_state != AlarmState.RESOLVED


def _side_breached(rule: Rule, side: str, value: float, *, clearing: bool) -> bool:
    # Inside the hysteresis band an alarm already raised stays raised: without it, a heart rate
    # hovering at 120/121 would raise and resolve every second (flapping).
    margin = rule.hysteresis if clearing else 0.0
    if side == "low":
        assert rule.low is not None  # noqa: S101  (a low side exists only with a low limit)
        return value < rule.low + margin
    assert rule.high is not None  # noqa: S101
    return value > rule.high - margin


def step_threshold(rule: Rule, side: str, track: Track, at: dt.datetime, value: float) -> None:
    """Move one threshold condition by one reading."""
    if track.is_open:
        _follow(side, track, at, value, breached=_side_breached(rule, side, value, clearing=True))
        return
    if not _side_breached(rule, side, value, clearing=False):
        if track.onset_at is not None:
            track.onset_at, track.dirty = None, True
        return
    if track.onset_at is None:
        track.onset_at, track.dirty = at, True
    # The condition must last the rule's delay before it is an alarm (IEC 60601-2-27 allows
    # at most 10 s for heart rate): a single artefact never pages anyone.
    if (at - track.onset_at).total_seconds() >= rule.delay_seconds:
        threshold = rule.low if side == "low" else rule.high
        _raise(rule, track, at, value, threshold)


def step_rate(rule: Rule, side: str, track: Track, at: dt.datetime, value: float) -> None:
    """Move one rate-of-change condition by one reading.

    The change is measured against a reference reading taken about one window earlier; the
    reference moves on once a whole window has passed, so the rule sees each window's change.
    """
    assert rule.window_seconds is not None  # noqa: S101  (validation requires a window)
    window = rule.window_seconds
    reference = track.reference
    if reference is None or (at - reference[0]).total_seconds() > 2 * window:
        track.reference, track.dirty = (at, value), True
        return
    elapsed = (at - reference[0]).total_seconds()
    if elapsed < window:
        return
    change = value - reference[1]
    breached = change < rule.low if side == "low" and rule.low is not None else False
    if side == "high" and rule.high is not None:
        breached = change > rule.high
    track.reference, track.dirty = (at, value), True
    if track.is_open:
        _follow(side, track, at, value, breached=breached)
    elif breached:
        _raise(rule, track, at, value, rule.low if side == "low" else rule.high)


def step_level(
    rule: Rule, track: Track, at: dt.datetime, value: float, priority: Priority | None
) -> None:
    """Move a condition whose priority follows a graded level (NEWS2 bands): None is clear."""
    if track.is_open:
        if priority is None:
            _follow("level", track, at, value, breached=False)
            return
        track.last = (at, value)
        track.worst = value if track.worst is None else max(track.worst, value)
        if track.priority is not None and priority != track.priority:
            track.priority = priority
            _apply(track, Action.ESCALATE_PRIORITY)
        if not track.condition_active:
            _apply(track, Action.RECUR)
        return
    if priority is not None:
        track.priority = priority
        _raise(rule, track, at, value, rule.low if priority != Priority.HIGH else rule.high)


def clear(track: Track, at: dt.datetime, value: float) -> None:
    """End an open alarm's condition (data came back, an advisory no longer holds)."""
    if track.is_open and track.condition_active:
        _follow("clear", track, at, value, breached=False)


def _raise(
    rule: Rule, track: Track, at: dt.datetime, value: float, threshold: float | None
) -> None:
    track.alarm_state = AlarmState.ACTIVE
    track.latching = rule.latching
    track.condition_active = True
    track.priority = track.priority or rule.priority
    track.raised = (at, value, threshold)
    track.last = (at, value)
    track.worst = value
    if track.onset_at is not None:
        track.onset_at, track.dirty = None, True


def _follow(side: str, track: Track, at: dt.datetime, value: float, *, breached: bool) -> None:
    track.last = (at, value)
    if breached:
        if track.worst is None:
            track.worst = value
        else:
            track.worst = min(track.worst, value) if side == "low" else max(track.worst, value)
        if not track.condition_active:
            _apply(track, Action.RECUR)
        return
    if track.condition_active:
        _apply(track, Action.CLEAR)


def _apply(track: Track, action: Action) -> None:
    assert track.alarm_state is not None  # noqa: S101  (only open alarms move)
    moved = transition(
        track.alarm_state,
        latching=track.latching,
        condition_active=track.condition_active,
        action=action,
    )
    track.alarm_state, track.condition_active = moved.state, moved.condition_active
    track.changes.append(moved.change)


def news2_priority(rule: Rule, score: int) -> Priority | None:
    """Return the alarm priority of a NEWS2 score under `rule` (None: no alarm)."""
    if rule.high is not None and score >= rule.high:
        return Priority.HIGH
    if rule.low is not None and score >= rule.low:
        return Priority.MEDIUM
    return None
