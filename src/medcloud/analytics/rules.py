"""Alert rules: pure functions from a sample to the alerts it should raise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from medcloud.config import AlertSettings


@dataclass(frozen=True)
class Rule:
    """Fire when `measurement` compares to `threshold` as `breached` says."""

    name: str
    measurement: str
    threshold: float
    severity: str
    breached: Callable[[float, float], bool]


@dataclass(frozen=True)
class Breach:
    """A rule that fired, with the value that fired it."""

    rule: Rule
    value: float


def threshold_rules(settings: AlertSettings) -> tuple[Rule, ...]:
    """Return the built-in threshold rules, with thresholds from settings."""
    return (
        Rule(
            "heart_rate_low",
            "heart_rate",
            settings.heart_rate_low,
            "high",
            lambda value, limit: value < limit,
        ),
        Rule(
            "heart_rate_high",
            "heart_rate",
            settings.heart_rate_high,
            "high",
            lambda value, limit: value > limit,
        ),
    )


def evaluate(rules: tuple[Rule, ...], measurements: dict[str, float]) -> list[Breach]:
    """Return the rules these measurements breach."""
    return [
        Breach(rule, measurements[rule.measurement])
        for rule in rules
        if rule.measurement in measurements
        and rule.breached(measurements[rule.measurement], rule.threshold)
    ]
