"""The National Early Warning Score 2 (NEWS2), Royal College of Physicians, 2017.

Pure functions: one per charted parameter, `score` for a whole set of vitals, and `risk_of` for
the clinical risk band of an aggregate score. Measured values are rounded the way the chart is
read (whole numbers, temperature to one decimal, halves up) before they are scored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum


class Consciousness(StrEnum):
    """Level of consciousness on the ACVPU scale."""

    ALERT = "A"
    CONFUSION = "C"
    """New confusion."""
    VOICE = "V"
    PAIN = "P"
    UNRESPONSIVE = "U"


class Risk(StrEnum):
    """Clinical risk band of an aggregate NEWS2 score."""

    LOW = "low"
    LOW_MEDIUM = "low-medium"
    MEDIUM = "medium"
    HIGH = "high"


PARAMETERS: tuple[str, ...] = (
    "respiratory_rate",
    "spo2",
    "supplemental_oxygen",
    "systolic_bp",
    "pulse",
    "consciousness",
    "temperature",
)
"""Keys of `News2.components`, in the chart's order."""

SPO2_SCALES: tuple[int, ...] = (1, 2)

CONSCIOUSNESS_CODES: dict[Consciousness, int] = {
    Consciousness.ALERT: 0,
    Consciousness.CONFUSION: 1,
    Consciousness.VOICE: 2,
    Consciousness.PAIN: 3,
    Consciousness.UNRESPONSIVE: 4,
}
"""The numeric ACVPU codes consciousness is stored as among the readings."""

_CONSCIOUSNESS_BY_CODE = {code: level for level, code in CONSCIOUSNESS_CODES.items()}

_ONE_TENTH = Decimal("0.1")


@dataclass(frozen=True)
class Vitals:
    """One observation set: what NEWS2 scores."""

    respiratory_rate: float
    """Breaths per minute."""
    spo2: float
    """Oxygen saturation, %."""
    spo2_scale: int
    """1, or 2 for hypercapnic respiratory failure: a clinician's choice, never inferred."""
    supplemental_oxygen: bool
    systolic_bp: float
    """mmHg."""
    pulse: float
    """Beats per minute."""
    consciousness: Consciousness
    temperature: float
    """°C."""

    def __post_init__(self) -> None:
        check_spo2_scale(self.spo2_scale)


@dataclass(frozen=True)
class News2:
    """A NEWS2 score: the aggregate, its risk band, and each parameter's score."""

    score: int
    risk: Risk
    components: dict[str, int]
    """Score of each parameter, keyed by the names in `PARAMETERS`, in that order."""


def _decimal(value: float, name: str) -> Decimal:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    # str() gives the shortest repr, so 36.05 stays 36.05 rather than 36.04999…
    return Decimal(str(value))


def _whole(value: float, name: str) -> int:
    return int(_decimal(value, name).to_integral_value(rounding=ROUND_HALF_UP))


def _tenths(value: float, name: str) -> Decimal:
    # Scaling the exponent is exact and to_integral_value cannot overflow the context precision,
    # unlike quantize, so huge readings still score instead of raising.
    tenths = _decimal(value, name).scaleb(1).to_integral_value(rounding=ROUND_HALF_UP)
    return tenths * _ONE_TENTH


def respiratory_rate_score(value: float) -> int:
    """Score a respiratory rate in breaths per minute."""
    rate = _whole(value, "respiratory_rate")
    if rate <= 8:
        return 3
    if rate <= 11:
        return 1
    if rate <= 20:
        return 0
    if rate <= 24:
        return 2
    return 3


def check_spo2_scale(scale: int) -> int:
    """Return the SpO2 scale if it is 1 or 2, else raise ValueError."""
    # bool is an int subclass, and True == 1 would otherwise pass as scale 1.
    if isinstance(scale, bool) or scale not in SPO2_SCALES:
        raise ValueError(f"spo2_scale must be 1 or 2, got {scale!r}")
    return scale


def spo2_score(value: float, *, scale: int, on_oxygen: bool) -> int:
    """Score an oxygen saturation in % on SpO2 scale 1 or 2."""
    check_spo2_scale(scale)
    saturation = _whole(value, "spo2")
    if scale == 1:
        if saturation <= 91:
            return 3
        if saturation <= 93:
            return 2
        if saturation <= 95:
            return 1
        return 0
    if saturation <= 83:
        return 3
    if saturation <= 85:
        return 2
    if saturation <= 87:
        return 1
    # Scale 2 targets 88–92%: above that only matters when oxygen is driving the saturation up.
    if saturation <= 92 or not on_oxygen:
        return 0
    if saturation <= 94:
        return 1
    if saturation <= 96:
        return 2
    return 3


def supplemental_oxygen_score(on_oxygen: bool) -> int:
    """Score breathing supplemental oxygen rather than air."""
    return 2 if on_oxygen else 0


def systolic_bp_score(value: float) -> int:
    """Score a systolic blood pressure in mmHg."""
    pressure = _whole(value, "systolic_bp")
    if pressure <= 90:
        return 3
    if pressure <= 100:
        return 2
    if pressure <= 110:
        return 1
    if pressure <= 219:
        return 0
    return 3


def pulse_score(value: float) -> int:
    """Score a pulse rate in beats per minute."""
    rate = _whole(value, "pulse")
    if rate <= 40:
        return 3
    if rate <= 50:
        return 1
    if rate <= 90:
        return 0
    if rate <= 110:
        return 1
    if rate <= 130:
        return 2
    return 3


def consciousness_score(level: Consciousness) -> int:
    """Score a level of consciousness on the ACVPU scale."""
    # Consciousness() accepts the plain letter too, and rejects anything off the scale.
    return 0 if Consciousness(level) is Consciousness.ALERT else 3


def consciousness_from_code(code: float) -> Consciousness:
    """Return the ACVPU level stored as a numeric code, 0 (alert) to 4 (unresponsive)."""
    if isinstance(code, bool) or not math.isfinite(code) or code != int(code):
        raise ValueError(f"consciousness code must be a whole number 0–4, got {code!r}")
    level = _CONSCIOUSNESS_BY_CODE.get(int(code))
    if level is None:
        raise ValueError(f"consciousness code must be a whole number 0–4, got {code!r}")
    return level


def temperature_score(value: float) -> int:
    """Score a body temperature in °C."""
    temperature = _tenths(value, "temperature")
    if temperature <= Decimal("35.0"):
        return 3
    if temperature <= Decimal("36.0"):
        return 1
    if temperature <= Decimal("38.0"):
        return 0
    if temperature <= Decimal("39.0"):
        return 1
    return 2


def risk_of(total: int, components: Mapping[str, int]) -> Risk:
    """Return the clinical risk band of an aggregate score and the scores that make it up."""
    if total < 0:
        raise ValueError(f"a NEWS2 score is never negative, got {total}")
    if total >= 7:
        return Risk.HIGH
    if total >= 5:
        return Risk.MEDIUM
    # A single extreme parameter warrants an urgent ward-based response even at a low total.
    if any(points >= 3 for points in components.values()):
        return Risk.LOW_MEDIUM
    return Risk.LOW


def score(vitals: Vitals) -> News2:
    """Score a set of vitals with NEWS2."""
    components = {
        "respiratory_rate": respiratory_rate_score(vitals.respiratory_rate),
        "spo2": spo2_score(
            vitals.spo2, scale=vitals.spo2_scale, on_oxygen=vitals.supplemental_oxygen
        ),
        "supplemental_oxygen": supplemental_oxygen_score(vitals.supplemental_oxygen),
        "systolic_bp": systolic_bp_score(vitals.systolic_bp),
        "pulse": pulse_score(vitals.pulse),
        "consciousness": consciousness_score(vitals.consciousness),
        "temperature": temperature_score(vitals.temperature),
    }
    total = sum(components.values())
    return News2(score=total, risk=risk_of(total, components), components=components)
