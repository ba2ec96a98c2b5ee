"""Alarm rules: what each kind of rule means, the defaults, validation, and which rule applies.

Rules are data. The defaults are built from settings; organisations, wards and patients
override them by key, and the narrowest scope wins (patient, ward, organisation, default).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from medcloud.config import AlertSettings
from medcloud.platform.catalogue import CATALOGUE
from medcloud.platform.errors import FieldError


class RuleKind(StrEnum):
    """What a rule watches."""

    THRESHOLD = "threshold"
    """A value below `low` or above `high`, for `delay_seconds`, cleared `hysteresis` inside."""
    RATE_OF_CHANGE = "rate_of_change"
    """A change over `window_seconds` below `low` (a fall, negative) or above `high` (a rise)."""
    MISSING_DATA = "missing_data"
    """No reading of `measurement` for `window_seconds` from a patient who was reporting it."""
    NEWS2 = "news2"
    """A NEWS2 score of at least `low` (medium priority) or at least `high` (high priority)."""
    PREDICTED_CROSSING = "predicted_crossing"
    """A forecast that crosses `low` or `high` within `window_seconds`: an advisory."""
    ANOMALY = "anomaly"
    """The anomaly model flags the patient's recent vitals: an advisory."""


class Priority(StrEnum):
    """IEC 60601-1-8 alarm priorities."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Order priorities: a higher rank is more urgent."""
        return {"low": 1, "medium": 2, "high": 3}[self.value]


class Scope(StrEnum):
    """Where a rule applies; a narrower scope overrides a broader one with the same key."""

    DEFAULT = "default"
    ORGANISATION = "organisation"
    WARD = "ward"
    PATIENT = "patient"


SCOPE_ORDER = (Scope.PATIENT, Scope.WARD, Scope.ORGANISATION, Scope.DEFAULT)
HEART_RATE_MAX_DELAY_SECONDS = 10.0
"""IEC 60601-2-27: a heart-rate alarm condition may be delayed by at most 10 s."""
MAX_DELAY_SECONDS = 300.0
KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class Rule:
    """One rule as it applies: a default, or a configured override."""

    key: str
    kind: RuleKind
    measurement: str | None
    priority: Priority
    low: float | None = None
    high: float | None = None
    hysteresis: float = 0.0
    delay_seconds: float = 0.0
    window_seconds: float | None = None
    latching: bool = False
    enabled: bool = True
    scope: Scope = Scope.DEFAULT
    scope_id: str = ""
    id: str | None = None
    version: int = 0
    """0 for a default rule: defaults change only with the settings."""

    def conditions(self) -> tuple[str, ...]:
        """Name the alarm conditions this rule raises (one open alarm per subject and each)."""
        if self.kind in (RuleKind.THRESHOLD, RuleKind.RATE_OF_CHANGE):
            sides = []
            if self.low is not None:
                sides.append(f"{self.key}_low")
            if self.high is not None:
                sides.append(f"{self.key}_high")
            return tuple(sides)
        return (self.key,)


def default_rules(settings: AlertSettings) -> tuple[Rule, ...]:
    """Return the rules every organisation starts with (the reference design's heart-rate rule,
    NEWS2, and two advisories)."""
    return (
        Rule(
            "heart_rate",
            RuleKind.THRESHOLD,
            "heart_rate",
            Priority.HIGH,
            low=settings.heart_rate_low,
            high=settings.heart_rate_high,
            hysteresis=5.0,
        ),
        Rule("news2", RuleKind.NEWS2, None, Priority.HIGH, low=5, high=7),
        Rule(
            "heart_rate_forecast",
            RuleKind.PREDICTED_CROSSING,
            "heart_rate",
            Priority.LOW,
            low=settings.heart_rate_low,
            high=settings.heart_rate_high,
            window_seconds=settings.forecast_horizon_minutes * 60,
        ),
        Rule("anomaly", RuleKind.ANOMALY, None, Priority.LOW),
    )


def effective_rules(
    defaults: Iterable[Rule],
    configured: Iterable[Rule],
    *,
    ward_id: str | None,
    patient_id: str | None,
) -> tuple[Rule, ...]:
    """Return the enabled rules that apply to one patient (or to a device without one)."""
    by_key: dict[str, dict[Scope, Rule]] = {}
    for rule in (*defaults, *configured):
        if _applies(rule, ward_id=ward_id, patient_id=patient_id):
            by_key.setdefault(rule.key, {})[rule.scope] = rule
    chosen = []
    for scopes in by_key.values():
        rule = next(scopes[scope] for scope in SCOPE_ORDER if scope in scopes)
        if rule.enabled:
            chosen.append(rule)
    return tuple(sorted(chosen, key=lambda r: r.key))


def _applies(rule: Rule, *, ward_id: str | None, patient_id: str | None) -> bool:
    if rule.scope == Scope.WARD:
        return ward_id is not None and rule.scope_id == ward_id
    if rule.scope == Scope.PATIENT:
        return patient_id is not None and rule.scope_id == patient_id
    return True


def validate(rule: Rule) -> list[FieldError]:
    """Return every reason `rule` cannot be saved (empty: it can)."""
    errors: list[FieldError] = []
    if not KEY.match(rule.key):
        errors.append(FieldError("key", "lower-case letters, digits and _, at most 40"))
    needs_measurement = rule.kind not in (RuleKind.NEWS2, RuleKind.ANOMALY)
    kind = CATALOGUE.get(rule.measurement or "")
    if needs_measurement and kind is None:
        known = ", ".join(sorted(CATALOGUE))
        errors.append(FieldError("measurement", f"a measurement type of the catalogue: {known}"))
    elif not needs_measurement and rule.measurement is not None:
        errors.append(FieldError("measurement", f"a {rule.kind.value} rule names none"))
    if rule.kind in (RuleKind.THRESHOLD, RuleKind.PREDICTED_CROSSING, RuleKind.NEWS2):
        if rule.low is None and rule.high is None:
            errors.append(FieldError("low", "give low, high or both"))
    if rule.low is not None and rule.high is not None and rule.low >= rule.high:
        errors.append(FieldError("low", "must be below high"))
    if kind is not None and rule.kind in (RuleKind.THRESHOLD, RuleKind.PREDICTED_CROSSING):
        for name, limit in (("low", rule.low), ("high", rule.high)):
            if limit is not None and not kind.minimum <= limit <= kind.maximum:
                errors.append(
                    FieldError(
                        name,
                        f"in {kind.unit}, within {kind.minimum:g}–{kind.maximum:g}",
                    )
                )
    if rule.kind == RuleKind.RATE_OF_CHANGE:
        if rule.low is None and rule.high is None:
            errors.append(FieldError("low", "give a fall (negative low), a rise (high), or both"))
        if rule.low is not None and rule.low >= 0:
            errors.append(FieldError("low", "a fall is negative"))
        if rule.high is not None and rule.high <= 0:
            errors.append(FieldError("high", "a rise is positive"))
    if rule.kind == RuleKind.NEWS2:
        for name, limit in (("low", rule.low), ("high", rule.high)):
            if limit is not None and not 1 <= limit <= 20:
                errors.append(FieldError(name, "a NEWS2 score, 1–20"))
    if rule.hysteresis < 0:
        errors.append(FieldError("hysteresis", "must not be negative"))
    elif (
        rule.low is not None
        and rule.high is not None
        and rule.kind == RuleKind.THRESHOLD
        and rule.hysteresis * 2 >= rule.high - rule.low
    ):
        errors.append(FieldError("hysteresis", "must leave a normal band between low and high"))
    limit = HEART_RATE_MAX_DELAY_SECONDS if rule.measurement == "heart_rate" else MAX_DELAY_SECONDS
    if not 0 <= rule.delay_seconds <= limit:
        errors.append(FieldError("delay_seconds", f"0–{limit:g} s for {rule.measurement}"))
    windowed = (RuleKind.RATE_OF_CHANGE, RuleKind.MISSING_DATA, RuleKind.PREDICTED_CROSSING)
    if rule.kind in windowed and (rule.window_seconds is None or rule.window_seconds < 10):
        errors.append(FieldError("window_seconds", "at least 10 s for this kind of rule"))
    if rule.window_seconds is not None and rule.window_seconds > 86_400:
        errors.append(FieldError("window_seconds", "at most one day"))
    return errors
