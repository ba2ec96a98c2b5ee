from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from medcloud.analytics.rules import evaluate, threshold_rules
from medcloud.config import AlertSettings

RULES = threshold_rules(AlertSettings())


@given(st.floats(min_value=0, max_value=350))
def test_heart_rate_alerts_fire_outside_40_to_120_only(heart_rate: float) -> None:
    fired = {breach.rule.name for breach in evaluate(RULES, {"heart_rate": heart_rate})}
    if heart_rate < 40:
        assert fired == {"heart_rate_low"}
    elif heart_rate > 120:
        assert fired == {"heart_rate_high"}
    else:
        assert fired == set()


def test_thresholds_come_from_settings() -> None:
    rules = threshold_rules(AlertSettings(heart_rate_low=50, heart_rate_high=100))
    assert [b.rule.name for b in evaluate(rules, {"heart_rate": 45})] == ["heart_rate_low"]
    assert [b.rule.name for b in evaluate(rules, {"heart_rate": 101})] == ["heart_rate_high"]


def test_other_measurements_do_not_fire_heart_rate_rules() -> None:
    assert evaluate(RULES, {"spo2": 10, "temperature": 44}) == []
