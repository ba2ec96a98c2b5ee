"""NEWS2 scoring against the Royal College of Physicians chart (2017): every band edge."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medcloud.analytics.news2 import (
    CONSCIOUSNESS_CODES,
    PARAMETERS,
    Consciousness,
    Risk,
    Vitals,
    consciousness_from_code,
    consciousness_score,
    pulse_score,
    respiratory_rate_score,
    risk_of,
    score,
    spo2_score,
    supplemental_oxygen_score,
    systolic_bp_score,
    temperature_score,
)

HEALTHY = Vitals(
    respiratory_rate=16,
    spo2=97,
    spo2_scale=1,
    supplemental_oxygen=False,
    systolic_bp=125,
    pulse=72,
    consciousness=Consciousness.ALERT,
    temperature=37.0,
)


@pytest.mark.parametrize(
    ("rate", "points"),
    [(0, 3), (8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3), (60, 3)],
)
def test_respiratory_rate_scores_every_band_edge(rate: float, points: int) -> None:
    assert respiratory_rate_score(rate) == points


@pytest.mark.parametrize(
    ("saturation", "points"),
    [(70, 3), (91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0), (100, 0)],
)
@pytest.mark.parametrize("on_oxygen", [False, True])
def test_spo2_scale_1_scores_every_band_edge_on_air_or_oxygen(
    saturation: float, points: int, on_oxygen: bool
) -> None:
    assert spo2_score(saturation, scale=1, on_oxygen=on_oxygen) == points


@pytest.mark.parametrize(
    ("saturation", "on_oxygen", "points"),
    [
        (70, False, 3),
        (83, False, 3),
        (83, True, 3),
        (84, False, 2),
        (85, True, 2),
        (86, False, 1),
        (87, True, 1),
        (88, False, 0),
        (88, True, 0),
        (92, False, 0),
        (92, True, 0),
        (93, False, 0),
        (93, True, 1),
        (94, True, 1),
        (95, True, 2),
        (96, True, 2),
        (97, True, 3),
        (100, True, 3),
        (97, False, 0),
        (100, False, 0),
    ],
)
def test_spo2_scale_2_scores_every_band_edge_on_air_and_oxygen(
    saturation: float, on_oxygen: bool, points: int
) -> None:
    assert spo2_score(saturation, scale=2, on_oxygen=on_oxygen) == points


@pytest.mark.parametrize("scale", [0, 3, -1, True])
def test_spo2_scale_other_than_1_or_2_is_rejected(scale: int) -> None:
    with pytest.raises(ValueError, match="spo2_scale must be 1 or 2"):
        spo2_score(95, scale=scale, on_oxygen=False)


def test_vitals_with_an_unknown_spo2_scale_are_rejected() -> None:
    with pytest.raises(ValueError, match="spo2_scale must be 1 or 2"):
        replace(HEALTHY, spo2_scale=3)


@pytest.mark.parametrize(("on_oxygen", "points"), [(False, 0), (True, 2)])
def test_supplemental_oxygen_scores_2_and_air_0(on_oxygen: bool, points: int) -> None:
    assert supplemental_oxygen_score(on_oxygen) == points


@pytest.mark.parametrize(
    ("pressure", "points"),
    [
        (50, 3),
        (90, 3),
        (91, 2),
        (100, 2),
        (101, 1),
        (110, 1),
        (111, 0),
        (219, 0),
        (220, 3),
        (280, 3),
    ],
)
def test_systolic_bp_scores_every_band_edge(pressure: float, points: int) -> None:
    assert systolic_bp_score(pressure) == points


@pytest.mark.parametrize(
    ("rate", "points"),
    [
        (20, 3),
        (40, 3),
        (41, 1),
        (50, 1),
        (51, 0),
        (90, 0),
        (91, 1),
        (110, 1),
        (111, 2),
        (130, 2),
        (131, 3),
        (220, 3),
    ],
)
def test_pulse_scores_every_band_edge(rate: float, points: int) -> None:
    assert pulse_score(rate) == points


@pytest.mark.parametrize(
    ("level", "points"),
    [
        (Consciousness.ALERT, 0),
        (Consciousness.CONFUSION, 3),
        (Consciousness.VOICE, 3),
        (Consciousness.PAIN, 3),
        (Consciousness.UNRESPONSIVE, 3),
    ],
)
def test_consciousness_scores_alert_0_and_any_other_acvpu_level_3(
    level: Consciousness, points: int
) -> None:
    assert consciousness_score(level) == points


@pytest.mark.parametrize(
    ("temperature", "points"),
    [
        (32.0, 3),
        (35.0, 3),
        (35.1, 1),
        (36.0, 1),
        (36.1, 0),
        (38.0, 0),
        (38.1, 1),
        (39.0, 1),
        (39.1, 2),
        (42.0, 2),
    ],
)
def test_temperature_scores_every_band_edge(temperature: float, points: int) -> None:
    assert temperature_score(temperature) == points


@pytest.mark.parametrize(
    ("rate", "points"),
    [(8.4, 3), (8.5, 1), (11.49, 1), (11.5, 0), (20.4, 0), (20.5, 2), (24.4, 2), (24.5, 3)],
)
def test_respiratory_rate_is_rounded_half_up_to_a_whole_breath(rate: float, points: int) -> None:
    assert respiratory_rate_score(rate) == points


@pytest.mark.parametrize(
    ("saturation", "scale", "on_oxygen", "points"),
    [
        (91.4, 1, False, 3),
        (91.5, 1, False, 2),
        (95.5, 1, False, 0),
        (87.5, 2, False, 0),
        (92.5, 2, True, 1),
        (96.5, 2, True, 3),
    ],
)
def test_spo2_is_rounded_half_up_to_a_whole_percent(
    saturation: float, scale: int, on_oxygen: bool, points: int
) -> None:
    assert spo2_score(saturation, scale=scale, on_oxygen=on_oxygen) == points


@pytest.mark.parametrize(
    ("pressure", "points"), [(90.4, 3), (90.5, 2), (110.5, 0), (219.4, 0), (219.5, 3)]
)
def test_systolic_bp_is_rounded_half_up_to_a_whole_mmhg(pressure: float, points: int) -> None:
    assert systolic_bp_score(pressure) == points


@pytest.mark.parametrize(
    ("rate", "points"), [(40.4, 3), (40.5, 1), (90.4, 0), (90.5, 1), (130.5, 3)]
)
def test_pulse_is_rounded_half_up_to_a_whole_beat(rate: float, points: int) -> None:
    assert pulse_score(rate) == points


@pytest.mark.parametrize(
    ("temperature", "points"),
    [
        (35.04, 3),
        (35.05, 1),
        (36.04, 1),
        # 36.05 and 38.05 are stored as a hair under .05, yet read as 36.1 and 38.1.
        (36.05, 0),
        (38.04, 0),
        (38.05, 1),
        (39.04, 1),
        (39.05, 2),
    ],
)
def test_temperature_is_rounded_half_up_to_one_decimal(temperature: float, points: int) -> None:
    assert temperature_score(temperature) == points


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_value_that_is_not_a_finite_number_is_rejected(value: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        respiratory_rate_score(value)
    with pytest.raises(ValueError, match="finite"):
        temperature_score(value)


@pytest.mark.parametrize(
    ("components", "total", "risk"),
    [
        ({"respiratory_rate": 0}, 0, Risk.LOW),
        ({"respiratory_rate": 2, "temperature": 2}, 4, Risk.LOW),
        ({"consciousness": 3}, 3, Risk.LOW_MEDIUM),
        ({"consciousness": 3, "pulse": 1}, 4, Risk.LOW_MEDIUM),
        ({"respiratory_rate": 2, "spo2": 2, "pulse": 1}, 5, Risk.MEDIUM),
        ({"consciousness": 3, "supplemental_oxygen": 2}, 5, Risk.MEDIUM),
        ({"respiratory_rate": 2, "spo2": 2, "pulse": 2}, 6, Risk.MEDIUM),
        ({"respiratory_rate": 2, "spo2": 2, "pulse": 2, "temperature": 1}, 7, Risk.HIGH),
        ({"consciousness": 3, "pulse": 3, "temperature": 1}, 7, Risk.HIGH),
    ],
)
def test_risk_band_edges_with_medium_and_high_taking_precedence_over_low_medium(
    components: dict[str, int], total: int, risk: Risk
) -> None:
    assert risk_of(total, components) is risk


def test_a_negative_total_has_no_risk_band() -> None:
    with pytest.raises(ValueError, match="never negative"):
        risk_of(-1, {})


def test_healthy_adult_scores_0_and_low_risk() -> None:
    result = score(HEALTHY)
    assert result.score == 0
    assert result.risk is Risk.LOW
    assert result.components == dict.fromkeys(PARAMETERS, 0)


@pytest.mark.parametrize(
    ("vitals", "components", "total", "risk"),
    [
        # Sepsis on oxygen: 2 + 2 + 2 + 2 + 2 + 0 + 1.
        (
            Vitals(24, 93, 1, True, 98, 115, Consciousness.ALERT, 38.6),
            (2, 2, 2, 2, 2, 0, 1),
            11,
            Risk.HIGH,
        ),
        # New confusion alone.
        (
            Vitals(18, 96, 1, False, 120, 80, Consciousness.CONFUSION, 36.8),
            (0, 0, 0, 0, 0, 3, 0),
            3,
            Risk.LOW_MEDIUM,
        ),
        # Just below medium: 2 + 0 + 0 + 1 + 0 + 0 + 1.
        (
            Vitals(21, 96, 1, False, 105, 85, Consciousness.ALERT, 36.0),
            (2, 0, 0, 1, 0, 0, 1),
            4,
            Risk.LOW,
        ),
        # Hypercapnic patient on oxygen within the 88–92% target.
        (
            Vitals(22, 89, 2, True, 130, 95, Consciousness.ALERT, 37.5),
            (2, 0, 2, 0, 1, 0, 0),
            5,
            Risk.MEDIUM,
        ),
        # The same patient over-oxygenated to 97%.
        (
            Vitals(22, 97, 2, True, 130, 95, Consciousness.ALERT, 37.5),
            (2, 3, 2, 0, 1, 0, 0),
            8,
            Risk.HIGH,
        ),
        # The same saturation on scale 1 scores nothing.
        (
            Vitals(22, 97, 1, True, 130, 95, Consciousness.ALERT, 37.5),
            (2, 0, 2, 0, 1, 0, 0),
            5,
            Risk.MEDIUM,
        ),
        # Every parameter at its worst: the maximum score.
        (
            Vitals(8, 91, 1, True, 90, 40, Consciousness.UNRESPONSIVE, 35.0),
            (3, 3, 2, 3, 3, 3, 3),
            20,
            Risk.HIGH,
        ),
        # Unrounded readings: 20.5 → 21, 93.5 → 94, 36.05 → 36.1, 110.4 → 110, 50.5 → 51.
        (
            Vitals(20.5, 93.5, 1, False, 110.4, 50.5, Consciousness.ALERT, 36.05),
            (2, 1, 0, 1, 0, 0, 0),
            4,
            Risk.LOW,
        ),
    ],
)
def test_whole_patient_examples_scored_by_hand(
    vitals: Vitals, components: tuple[int, ...], total: int, risk: Risk
) -> None:
    result = score(vitals)
    assert result.components == dict(zip(PARAMETERS, components, strict=True))
    assert result.score == total
    assert result.risk is risk


def test_components_are_keyed_in_chart_order() -> None:
    assert tuple(score(HEALTHY).components) == PARAMETERS


@pytest.mark.parametrize(
    ("code", "level"),
    [
        (0, Consciousness.ALERT),
        (1, Consciousness.CONFUSION),
        (2, Consciousness.VOICE),
        (3.0, Consciousness.PAIN),
        (4.0, Consciousness.UNRESPONSIVE),
    ],
)
def test_consciousness_codes_map_to_acvpu_levels_both_ways(
    code: float, level: Consciousness
) -> None:
    assert consciousness_from_code(code) is level
    assert CONSCIOUSNESS_CODES[level] == code


@pytest.mark.parametrize("code", [-1, 5, 1.5, math.nan, math.inf, True])
def test_a_consciousness_code_off_the_acvpu_scale_is_rejected(code: float) -> None:
    with pytest.raises(ValueError, match="consciousness code"):
        consciousness_from_code(code)


VITALS = st.builds(
    Vitals,
    respiratory_rate=st.floats(min_value=0, max_value=80),
    spo2=st.floats(min_value=50, max_value=100),
    spo2_scale=st.sampled_from([1, 2]),
    supplemental_oxygen=st.booleans(),
    systolic_bp=st.floats(min_value=40, max_value=300),
    pulse=st.floats(min_value=0, max_value=300),
    consciousness=st.sampled_from(Consciousness),
    temperature=st.floats(min_value=25, max_value=45),
)


@given(VITALS)
def test_score_is_the_sum_of_its_components_and_within_0_to_20(vitals: Vitals) -> None:
    result = score(vitals)
    assert result.score == sum(result.components.values())
    assert 0 <= result.score <= 20
